"""Database URLs as users may see them: passwords masked everywhere.

Masked forms: the user info of a URL (``postgresql://user:secret@host/db`` — also when the
password holds an unencoded ``@`` or ``/``, or the URL is malformed), and ``password=``
settings in a query string or a libpq ``key=value`` connection string.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

# user:password@ — greedy up to the last "@" of the token, so "p@ss" and "se/cret" are masked
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s/@:'\"]*):([^\s'\"]*)@")
_KEYWORD = re.compile(
    r"""((?:^|[\s?&;])(?:password|sslpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;'"]*)""",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """``text`` (a URL, or a message quoting one) with every password masked as ``***``."""
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)
    return _KEYWORD.sub(lambda m: m.group(1) + "***", out)


def passwords_in(url: str) -> list[str]:
    """The password(s) a database URL or connection string carries, as written and decoded."""
    found = [m.group(3) for m in _USERINFO.finditer(url)]
    found += [m.group(2).strip("'") for m in _KEYWORD.finditer(url)]
    out: list[str] = []
    for p in found:
        for form in (p, unquote(p)):
            if form and form not in out:
                out.append(form)
    return out


def redact_text(text: str, url: str) -> str:
    """A driver's message about ``url``, with its password masked wherever it appears (the
    URL's, and ``PGPASSWORD``'s: libpq takes a password from the environment too)."""
    out = redact_url(text)
    found = passwords_in(url)
    env = os.environ.get("PGPASSWORD")
    if env:
        found.append(env)
    for pw in sorted(found, key=len, reverse=True):
        out = out.replace(pw, "***")
    return out
