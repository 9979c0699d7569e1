"""Druid's expression language (docs/querying/math-expr.md): parser, checks, row evaluator.

``parse_expression(text)`` parses and checks an expression (functions, arity, literal
arguments) and raises :class:`ExpressionSyntaxError` with the position of the first
problem. ``compile_row`` gives the per-row evaluator; the columnar evaluator over Arrow
arrays lives in the ingest engine (``middlemanager.ingest.expressions``) and agrees
with it on every value.
"""

from __future__ import annotations

from supervisor.expressions.ast import (
    ArrayLiteral,
    Binary,
    Call,
    Expr,
    Identifier,
    Literal,
    Unary,
    identifiers,
)
from supervisor.expressions.evaluate import RowFunction, compile_row, normalize_input
from supervisor.expressions.functions import FUNCTIONS, NOT_SUPPORTED, check
from supervisor.expressions.parser import ExpressionSyntaxError, parse
from supervisor.expressions.values import EvalError

__all__ = [
    "FUNCTIONS",
    "NOT_SUPPORTED",
    "ArrayLiteral",
    "Binary",
    "Call",
    "EvalError",
    "Expr",
    "ExpressionSyntaxError",
    "Identifier",
    "Literal",
    "RowFunction",
    "Unary",
    "compile_row",
    "identifiers",
    "normalize_input",
    "parse_expression",
]


def parse_expression(text: str) -> Expr:
    """Parse and check an expression; raises :class:`ExpressionSyntaxError`."""
    expr = parse(text)
    check(expr)
    return expr
