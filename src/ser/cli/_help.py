"""How `--help` pages write argument and option types: in the words a user types.

Typer 0.2x prints Python types (``<list[Path]>``, ``{paths}...``, ``<int range> [x>=1]``,
``<bool>`` beside every flag). :func:`readable_types` makes them read as command-line help
usually does: ``PATHS...`` in the usage line, ``PATH``, ``INTEGER ≥1``, nothing beside a flag.
It adjusts Typer's parameter classes in one place; on a Typer without those hooks (older
versions print click's own ``TEXT``/``INTEGER``) it changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "Path": "PATH",
          "int range": "INTEGER", "float range": "NUMBER", "bool": "", "file": "FILE",
          "directory": "FOLDER", "dir": "FOLDER"}


def _range(param: Any) -> str:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is None and high is None:
        return ""
    if high is None:
        return f" ≥{low}"
    if low is None:
        return f" ≤{high}"
    return f" {low}–{high}"


def type_label(param: Any, raw: str | None) -> str | None:
    """``<list[Path]>`` -> ``PATH``; ``<int range>`` with min=1 -> ``INTEGER ≥1``; flags ->
    nothing; an explicit metavar wins."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar is not None:
        return param.metavar
    if raw is None:
        return None
    inner = raw.strip("<>")
    while (m := re.fullmatch(r"list\[(.*)\]", inner)):
        inner = m.group(1)
    label = _NAMES.get(inner, inner if "|" in inner else inner.upper())
    return (label + _range(param)) or None


def readable_types() -> None:
    """Patch Typer's help rendering once (idempotent)."""
    try:
        from typer.core import TyperArgument, TyperOption, _TyperParameter
    except ImportError:  # another Typer: its own (click-style) rendering stays
        return
    needed = ("display_type", "display_type_rich", "_get_number_range_help_str")
    hooks = [hasattr(cls, n) for cls in (TyperArgument, TyperOption) for n in needed]
    if getattr(_TyperParameter, "_ser_readable", False) or not all(hooks) or not hasattr(
            TyperArgument, "_usage_display_name"):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return type_label(self, _TyperParameter.display_type(self, ctx))

    def no_range(self: Any) -> None:  # the range is part of the type label now
        return None

    def arg_name(self: Any) -> str:
        return self.metavar or self.name.upper()

    def usage_name(self: Any) -> str:
        name = arg_name(self) + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"

    def rich_name(self: Any) -> str:
        return arg_name(self) + ("..." if self.nargs != 1 else "")

    for cls in (TyperArgument, TyperOption):
        cls.display_type_rich = display_type_rich
        cls._get_number_range_help_str = no_range
    TyperArgument._usage_display_name = usage_name
    if hasattr(TyperArgument, "_rich_display_name"):
        TyperArgument._rich_display_name = rich_name
    _TyperParameter._ser_readable = True
