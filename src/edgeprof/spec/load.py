"""Loading a profile spec: YAML → validated models, every problem one sentence.

``load_spec(path)`` parses YAML, validates it with the pydantic models of :mod:`.models`
(unknown keys are errors) and turns every problem into one
:class:`~edgeprof.errors.SpecError` sentence that names the file, the line, the key path
(``profiling.targets[1].timout``) and the fix. Checks that span the document (target names
after matrix expansion, ``together:`` names, services and networks) are validators of the
models that raise :class:`~edgeprof.spec.models.SpecProblem` with the key path below them, so
they too are reported with their line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgeprof.errors import SpecError
from edgeprof.spec.models import Spec


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    path: str
    text: str


def load_spec(path: str | Path) -> LoadedSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file; pass the path of a profile spec (YAML)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read the profile spec ({e})") from None
    return parse_spec(text, str(p))


def read_yaml(text: str, source: str) -> tuple[Any, Any]:
    """The YAML node tree (for line numbers) and the data; a syntax error is one
    :class:`SpecError` sentence with the file and line."""
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{where}: YAML syntax error: {problem}; fix the YAML syntax") from None


def parse_spec(text: str, source: str = "<spec>") -> LoadedSpec:
    node, data = read_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a profile spec must be a YAML mapping with a 'profiling:' section"
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_explain(e, node, source)) from None
    return LoadedSpec(spec=spec, path=source, text=text)


def _loc_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _node_line(node: Any, loc: tuple[Any, ...]) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _data_loc(loc: tuple[Any, ...], node: Any, kind: str) -> tuple[Any, ...]:
    """Keep the parts of a pydantic error location that are keys/indices of the document.

    pydantic adds union-member tags (``str``, ``list[str]``, ``int``, ``Ulimit``) to the
    location; they are not keys the user wrote, so they are dropped. A key that is absent
    is kept only as the last part of a ``missing`` error.
    """
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is not None:
                out.append(part)
                node = nxt
                continue
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            out.append(part)
            node = node.value[part]
            continue
        if kind == "missing" and i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _explain(err: ValidationError, node: Any, source: str) -> str:
    e = err.errors()[0]
    # a validator of a nested mapping (budgets) may say where inside it the problem is
    inner = getattr((e.get("ctx") or {}).get("error"), "loc", ())
    loc = _data_loc(tuple(e["loc"]) + tuple(inner), node, e["type"])
    path = _loc_path(loc) or "(top level)"
    line = _node_line(node, loc)
    where = f"{source}:{line}" if line else source
    kind = e["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key '{path}'; remove it or check its spelling"
    elif kind == "missing":
        msg = f"missing required key '{path}'; add it"
    else:
        detail = str(e["msg"])
        detail = detail.removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
        msg = f"invalid value for '{path}'{shown}: {detail}"
        if isinstance(value, bool) and "string" in detail:
            msg += "; put it in quotes (YAML reads yes/no/on/off/true/false as booleans)"
    more = len(err.errors()) - 1
    suffix = f" ({more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
    return f"{where}: {msg}{suffix}"
