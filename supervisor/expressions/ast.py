"""The syntax tree of a Druid expression (docs/querying/math-expr.md).

Nodes are immutable; ``pos`` is the 0-based character offset of the node in the
expression text (used in error messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral

__all__ = [
    "ArrayLiteral",
    "Binary",
    "Call",
    "Expr",
    "Identifier",
    "Literal",
    "ScalarType",
    "Unary",
    "identifiers",
]

# Druid's expression types (ExpressionType): LONG, DOUBLE, STRING and their arrays.
ScalarType = TypingLiteral["LONG", "DOUBLE", "STRING"]


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: ``int`` (LONG), ``float`` (DOUBLE), ``str`` (STRING) or ``None`` (null)."""

    value: int | float | str | None
    pos: int = 0


@dataclass(frozen=True, slots=True)
class ArrayLiteral:
    """``[1, 2]``, ``<STRING>[]``: elements are literals; ``element_type`` from the values or the prefix."""

    elements: tuple[Literal, ...]
    element_type: ScalarType | None
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Identifier:
    """A column of the input row (``__time`` is the row time in ms)."""

    name: str
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Unary:
    op: TypingLiteral["-", "!"]
    operand: Expr
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % ^ < <= > >= == != && ||
    left: Expr
    right: Expr
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    """A function call; ``name`` is lower case (Druid looks functions up case-insensitively)."""

    name: str
    args: tuple[Expr, ...]
    pos: int = 0


Expr = Literal | ArrayLiteral | Identifier | Unary | Binary | Call


def identifiers(expr: Expr) -> set[str]:
    """The input columns an expression reads."""
    out: set[str] = set()
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Identifier):
            out.add(node.name)
        elif isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Binary):
            stack.extend((node.left, node.right))
        elif isinstance(node, Call):
            stack.extend(node.args)
    return out
