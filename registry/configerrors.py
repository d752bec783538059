"""Config mistakes as people read them: every one at once, each on one line with its file, line
and key, and an unknown key with the known key it most resembles (``did you mean tag_ttl?``).

pydantic reports a value that fits no member of a union once per member (``tags:`` is a filter
or a list); only the member the value was meant for is kept: the one with errors inside it.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Lines = dict[tuple[Any, ...], int]
Problem = tuple[int, str]  # (line, text): sorted by line when reported
_UNION_LABEL = re.compile(r"^[A-Z]|\[")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the known word closest to a misspelt ``word``; else empty."""
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def problem(source: str, lines: Lines, loc: tuple[Any, ...], message: str) -> Problem:
    """``source:line: key: message``, the line of the deepest part of ``loc`` the file has."""
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
    key = ".".join(str(part) for part in loc) or "(top level)"
    return line, f"{source}:{line}: {key}: {message}"


def describe(exc: ValidationError, lines: Lines, source: str,
             root: type[BaseModel]) -> list[Problem]:
    """Every error in ``exc``, one problem each, without the union members it was not meant for
    and without the "missing" twin of a misspelt key."""
    errors = _meant(exc.errors())
    suggested: set[tuple[Any, ...]] = set()
    found: list[tuple[tuple[Any, ...], str, str]] = []
    for error in errors:
        loc = _plain(error["loc"])
        if error["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            hint = did_you_mean(loc[-1], keys_at(root, loc[:-1]))
            if hint:
                suggested.add((*loc[:-1], hint[len(" (did you mean "):-2]))
            found.append((loc, "extra_forbidden", "unknown key" + hint))
        else:
            found.append((loc, error["type"], error["msg"].removeprefix("Value error, ")))
    return [problem(source, lines, loc, message) for loc, kind, message in found
            if not (kind == "missing" and loc in suggested)]


def keys_at(root: type[BaseModel], loc: Sequence[Any]) -> set[str]:
    """The keys the config accepts at ``loc`` (union members merged); empty if none known."""
    types_here: list[Any] = [root]
    for part in loc:
        types_here = [t for tp in types_here for t in _step(tp, part)]
    return {name for tp in types_here for model in _members(tp) if _is_model(model)
            for name in model.model_fields}


def _step(tp: Any, part: Any) -> list[Any]:
    """The types found one key (or index) below a value of type ``tp``."""
    found = []
    for member in _members(tp):
        origin, args = get_origin(member), get_args(member)
        if _is_model(member) and isinstance(part, str) and part in member.model_fields:
            found.append(member.model_fields[part].annotation)
        elif origin in (list, tuple) and isinstance(part, int) and args:
            found.append(args[0])
        elif origin is dict and isinstance(part, str) and len(args) == 2:
            found.append(args[1])
    return found


def _members(tp: Any) -> list[Any]:
    """``tp`` as the list of types a value may have: unions flattened, ``Annotated`` unwrapped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or isinstance(tp, types.UnionType):
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _plain(loc: tuple[int | str, ...]) -> tuple[Any, ...]:
    """``loc`` without the union-member labels pydantic adds (``TagFilter``, ``list[str]``)."""
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_LABEL.search(p)))


def _meant(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Per union a value failed, the errors of the member it was meant for: one with errors
    inside it (the value had its shape); if none had, one error saying what was expected."""
    sites: dict[tuple[Any, ...], list[ErrorDetails]] = {}
    kept: list[ErrorDetails] = []
    for error in errors:
        label = next((i for i, p in enumerate(error["loc"])
                      if isinstance(p, str) and _UNION_LABEL.search(p)), None)
        if label is None:
            kept.append(error)
        else:
            sites.setdefault(tuple(error["loc"][:label]), []).append(error)
    for site, members in sites.items():
        deep = [e for e in members if len(e["loc"]) > len(site) + 1]
        if deep:
            meant = deep[0]["loc"][len(site)]
            kept.extend(e for e in members if e["loc"][len(site)] == meant)
        else:
            shallow = dict(members[0])
            shallow["msg"] = " / ".join(dict.fromkeys(e["msg"] for e in members))
            kept.append(shallow)  # type: ignore[arg-type]
    return kept
