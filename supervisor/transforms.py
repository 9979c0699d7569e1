"""``transformSpec.transforms``: Druid's expression transforms (docs/ingestion/ingestion-spec.md#transforms).

``{"type": "expression", "name": ..., "expression": ...}`` adds (or shadows) the column
``name`` with the value of a Druid expression (docs/querying/math-expr.md) computed on
the input row. As in Druid, transforms read the input row only (never another
transform's output), may read ``__time`` (the row time in ms from the timestampSpec) and
replace it when named ``__time``; they run before the filter, which sees their outputs.
An expression that does not parse is refused with the position of the problem.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, model_validator

from supervisor._spec_common import DruidModel, NonEmptyStr, spec_problem
from supervisor.expressions import Expr, ExpressionSyntaxError, identifiers, parse_expression


def _parses(value: str) -> str:
    """An expression that Druid's grammar reads; a 400 with the position where it does not."""
    try:
        parse_expression(value)
    except ExpressionSyntaxError as exc:
        raise spec_problem(f"{exc.message} at position {exc.position}") from None
    return value


# The text of a Druid expression, checked when the spec is posted.
ExpressionText = Annotated[str, AfterValidator(_parses)]

__all__ = ["ExpressionTransform", "check_transform_names"]


class ExpressionTransform(DruidModel):
    type: Literal["expression"] = "expression"
    name: NonEmptyStr
    expression: ExpressionText

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kind = data.get("type")
            if kind is None:
                raise spec_problem("is required", "type")
            if kind != "expression":
                raise spec_problem(f"transform type '{kind}' is not supported (only 'expression')", "type")
        return data

    @cached_property
    def parsed(self) -> Expr:
        return parse_expression(self.expression)

    @cached_property
    def inputs(self) -> frozenset[str]:
        """The input columns the expression reads."""
        return frozenset(identifiers(self.parsed))


def check_transform_names(transforms: tuple[ExpressionTransform, ...]) -> tuple[ExpressionTransform, ...]:
    seen: set[str] = set()
    for index, transform in enumerate(transforms):
        if transform.name in seen:
            raise spec_problem(f"duplicate transform name '{transform.name}'", index, "name")
        seen.add(transform.name)
    return transforms
