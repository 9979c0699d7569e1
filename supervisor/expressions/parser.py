"""A hand-written Pratt parser for Druid's expression language.

Follows the grammar described in docs/querying/math-expr.md ("Expressions"):

* operators, in decreasing order of precedence: unary ``!`` and ``-``; ``^`` (right
  associative); ``*``, ``/``, ``%``; ``+``, ``-``; ``<``, ``<=``, ``>``, ``>=``, ``==``,
  ``!=``; ``&&`` and ``||`` (one level, left associative, as in Druid's ``Expr.g4``);
* a number with a dot (or an exponent) is a DOUBLE, otherwise a LONG; ``NaN`` and
  ``Infinity`` are DOUBLE literals, ``null`` is the null literal;
* string literals in single quotes, with Java escapes (``\\'``, ``\\n``, ``\\u0041``, ...);
* identifiers ``[A-Za-z_$][A-Za-z0-9_$]*`` or any text in double quotes;
* array literals ``[1, 2, 3]`` (comma or space separated literals, all of one type,
  nulls allowed), typed empty arrays ``<STRING>[]``, ``<LONG>[]``, ``<DOUBLE>[]``
  (also ``ARRAY<LONG>[...]``);
* function calls ``name(arg, ...)``, names looked up case-insensitively.

Lambdas (``(x) -> x + 1``, for ``map``/``filter``/``fold``...) are refused: the apply
functions are not supported yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from supervisor.expressions.ast import (
    ArrayLiteral,
    Binary,
    Call,
    Expr,
    Identifier,
    Literal,
    ScalarType,
    Unary,
)

__all__ = ["ExpressionSyntaxError", "parse"]


class ExpressionSyntaxError(ValueError):
    """A problem in an expression's text (or its functions), at ``position`` (0-based)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, ident, qident, op, eof
    text: str
    pos: int
    value: object = None


_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_OPERATORS = (
    "<=",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "->",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "<",
    ">",
    "!",
    "(",
    ")",
    ",",
    "[",
    "]",
    "=",
)
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_TYPES: dict[str, ScalarType] = {"LONG": "LONG", "DOUBLE": "DOUBLE", "STRING": "STRING"}


def _quoted(text: str, start: int, quote: str) -> tuple[str, int]:
    """The unescaped content of a quoted literal starting at ``start``, and the index after it."""
    out: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(out), index + 1
        if char == "\\":
            if index + 1 >= len(text):
                break
            code = text[index + 1]
            if code == "u":
                digits = text[index + 2 : index + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise ExpressionSyntaxError("bad unicode escape", index)
                out.append(chr(int(digits, 16)))
                index += 6
                continue
            if code not in _ESCAPES:
                raise ExpressionSyntaxError(f"bad escape '\\{code}'", index)
            out.append(_ESCAPES[code])
            index += 2
            continue
        out.append(char)
        index += 1
    raise ExpressionSyntaxError(
        "unterminated " + ("string literal" if quote == "'" else "quoted identifier"), start
    )


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    index = 0
    n = len(text)
    while index < n:
        char = text[index]
        if char.isspace():
            index += 1
            continue
        if char.isdigit():
            match = _NUMBER.match(text, index)
            assert match is not None
            literal = match.group()
            value: int | float = float(literal) if any(c in literal for c in ".eE") else int(literal)
            out.append(_Token("number", literal, index, value))
            index = match.end()
            continue
        if char in "'\"":
            content, end = _quoted(text, index, char)
            out.append(_Token("string" if char == "'" else "qident", text[index:end], index, content))
            index = end
            continue
        match = _IDENT.match(text, index)
        if match is not None:
            out.append(_Token("ident", match.group(), index, match.group()))
            index = match.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, index):
                out.append(_Token("op", op, index))
                index += len(op)
                break
        else:
            raise ExpressionSyntaxError(f"unexpected character {char!r}", index)
    out.append(_Token("eof", "", n))
    return out


# Binding powers (higher binds tighter); right associative operators bind their right side one lower.
_INFIX: dict[str, int] = {
    "&&": 10,
    "||": 10,
    "<": 20,
    "<=": 20,
    ">": 20,
    ">=": 20,
    "==": 20,
    "!=": 20,
    "+": 30,
    "-": 30,
    "*": 40,
    "/": 40,
    "%": 40,
    "^": 50,
}
_RIGHT_ASSOC = {"^"}
_PREFIX_POWER = 60


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, op: str) -> _Token:
        token = self.token
        if token.kind != "op" or token.text != op:
            found = "the end of the expression" if token.kind == "eof" else repr(token.text)
            raise ExpressionSyntaxError(f"expected '{op}' but found {found}", token.pos)
        return self.advance()

    def parse(self) -> Expr:
        if self.token.kind == "eof":
            raise ExpressionSyntaxError("empty expression", 0)
        expr = self.expression(0)
        if self.token.kind != "eof":
            raise ExpressionSyntaxError(f"unexpected {self.token.text!r}", self.token.pos)
        return expr

    def expression(self, min_power: int) -> Expr:
        left = self.prefix()
        while True:
            token = self.token
            if token.kind != "op" or token.text not in _INFIX:
                if token.kind == "op" and token.text == "=":
                    raise ExpressionSyntaxError("unexpected '=' (use '==' to compare)", token.pos)
                return left
            power = _INFIX[token.text]
            if power <= min_power:
                return left
            self.advance()
            right = self.expression(power - 1 if token.text in _RIGHT_ASSOC else power)
            left = Binary(token.text, left, right, token.pos)

    def prefix(self) -> Expr:
        token = self.advance()
        if token.kind == "number":
            assert isinstance(token.value, int | float)
            return Literal(token.value, token.pos)
        if token.kind == "string":
            assert isinstance(token.value, str)
            return Literal(token.value, token.pos)
        if token.kind == "qident":
            assert isinstance(token.value, str)
            return Identifier(token.value, token.pos)
        if token.kind == "ident":
            return self.name(token)
        if token.kind == "op":
            if token.text in ("-", "!"):
                operand = self.expression(_PREFIX_POWER)
                if (
                    token.text == "-"
                    and isinstance(operand, Literal)
                    and isinstance(operand.value, int | float)
                ):
                    # Druid folds a minus before a number into the literal
                    return Literal(-operand.value, token.pos)
                return Unary("-" if token.text == "-" else "!", operand, token.pos)
            if token.text == "(":
                inner = self.expression(0)
                if self.token.kind == "op" and self.token.text == ",":
                    raise ExpressionSyntaxError("lambda expressions are not supported yet", token.pos)
                self.expect(")")
                if self.token.kind == "op" and self.token.text == "->":
                    raise ExpressionSyntaxError("lambda expressions are not supported yet", token.pos)
                return inner
            if token.text == "[":
                return self.array(token.pos, None)
            if token.text == "<":
                return self.typed_array(token.pos)
        if token.kind == "eof":
            raise ExpressionSyntaxError("unexpected end of the expression", token.pos)
        raise ExpressionSyntaxError(f"unexpected {token.text!r}", token.pos)

    def name(self, token: _Token) -> Expr:
        text = token.text
        if text == "null":
            return Literal(None, token.pos)
        if text == "NaN":
            return Literal(float("nan"), token.pos)
        if text == "Infinity":
            return Literal(float("inf"), token.pos)
        if text.upper() == "ARRAY" and self.token.kind == "op" and self.token.text == "<":
            self.advance()
            return self.typed_array(token.pos)
        if self.token.kind == "op" and self.token.text == "(":
            self.advance()
            args: list[Expr] = []
            if not (self.token.kind == "op" and self.token.text == ")"):
                while True:
                    args.append(self.expression(0))
                    if self.token.kind == "op" and self.token.text == "->":
                        raise ExpressionSyntaxError(
                            "lambda expressions are not supported yet", self.token.pos
                        )
                    if self.token.kind == "op" and self.token.text == ",":
                        self.advance()
                        continue
                    break
            self.expect(")")
            return Call(text.lower(), tuple(args), token.pos)
        return Identifier(text, token.pos)

    def typed_array(self, pos: int) -> Expr:
        type_token = self.advance()
        element_type = _TYPES.get(type_token.text.upper()) if type_token.kind == "ident" else None
        if element_type is None:
            raise ExpressionSyntaxError("expected LONG, DOUBLE or STRING as the array type", type_token.pos)
        self.expect(">")
        start = self.expect("[")
        return self.array(start.pos, element_type, pos)

    def array(self, bracket: int, element_type: ScalarType | None, pos: int | None = None) -> Expr:
        elements: list[Literal] = []
        while not (self.token.kind == "op" and self.token.text == "]"):
            element = self.prefix()
            if not isinstance(element, Literal):
                raise ExpressionSyntaxError(
                    "array literals may only hold literal values", getattr(element, "pos", bracket)
                )
            elements.append(element)
            if self.token.kind == "op" and self.token.text == ",":
                self.advance()
            elif self.token.kind == "eof":
                raise ExpressionSyntaxError("unterminated array literal", bracket)
        self.expect("]")
        kinds = {_literal_type(e.value) for e in elements if e.value is not None}
        if element_type is None:
            if len(kinds) > 1 and kinds != {"LONG", "DOUBLE"}:
                raise ExpressionSyntaxError("all values of an array literal must be of one type", bracket)
            element_type = "DOUBLE" if "DOUBLE" in kinds else (kinds.pop() if kinds else None)
        return ArrayLiteral(tuple(elements), element_type, bracket if pos is None else pos)


def _literal_type(value: object) -> ScalarType:
    if isinstance(value, str):
        return "STRING"
    return "DOUBLE" if isinstance(value, float) else "LONG"


def parse(text: str) -> Expr:
    """Parse an expression; raises :class:`ExpressionSyntaxError` with the position of the problem."""
    if not isinstance(text, str):
        raise ExpressionSyntaxError("the expression must be a string", 0)
    return _Parser(text).parse()
