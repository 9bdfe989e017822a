"""Database URLs as users may see them: passwords masked everywhere."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@:]*):([^/@]*)@")
_QUERY_PW = re.compile(r"([?&](?:password|sslpassword)=)([^&#]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db?password=x`` → ``postgresql://user:***@host/db?password=***``."""
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", url)
    return _QUERY_PW.sub(lambda m: m.group(1) + "***", out)


def url_password(url: str) -> str | None:
    """The password a URL carries (in the user info or the query), decoded; None if none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return unquote(parts.password)
    for k, v in parse_qsl(parts.query):
        if k.lower() == "password" and v:
            return v
    return None
