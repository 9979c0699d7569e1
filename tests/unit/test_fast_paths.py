"""Kernel (columnar) paths of the ingest engine agree exactly with the reference paths they replace."""

from __future__ import annotations

import math
import random
from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from middlemanager.ingest import transforms
from middlemanager.ingest.transforms import column_of, filter_mask
from supervisor.filters import DimFilter

FILTER = TypeAdapter(DimFilter)


def _values(kind: str, rng: random.Random, n: int) -> list[Any]:
    if kind == "long":
        pool = [0, 1, -1, 9, 10, 11, 2**53, 2**53 + 1, -(2**63), 2**63 - 1, 123456789012345678]
        return [None if rng.random() < 0.1 else rng.choice(pool + [rng.randint(-50, 50)]) for _ in range(n)]
    if kind == "double":
        pool = [0.0, -0.0, 9.999999, 10.0, 10.000001, -10.0, math.inf, -math.inf, math.nan, 1e300, 5e-324]
        return [None if rng.random() < 0.1 else rng.choice(pool + [rng.uniform(-20, 20)]) for _ in range(n)]
    pool = ["", "a", "b", "Apple", "apple", "10", "9", "é", "\U0001f600", " a", "a "]
    return [None if rng.random() < 0.1 else rng.choice(pool) for _ in range(n)]


KERNEL_FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("long", {"type": "bound", "lower": "10", "ordering": "numeric"}),
    ("long", {"type": "bound", "lower": "10", "lowerStrict": True, "ordering": "numeric"}),
    ("long", {"type": "bound", "upper": "9007199254740992", "upperStrict": True, "ordering": "numeric"}),
    ("long", {"type": "bound", "lower": "-1.5", "upper": "10", "ordering": "numeric"}),
    ("double", {"type": "bound", "lower": "10", "ordering": "numeric"}),
    ("double", {"type": "bound", "lower": "-0", "upper": "1e300", "upperStrict": True, "ordering": "numeric"}),
    ("double", {"type": "bound", "upper": "Infinity", "ordering": "numeric"}),
    ("string", {"type": "selector", "value": "Apple"}),
    ("string", {"type": "selector", "value": ""}),
    ("string", {"type": "selector", "value": None}),
    ("string", {"type": "in", "values": ["a", "", "\U0001f600"]}),
    ("string", {"type": "in", "values": ["b", None]}),
]


@pytest.mark.parametrize(("kind", "spec"), KERNEL_FILTERS, ids=[f"{k}:{s}" for k, s in KERNEL_FILTERS])
def test_kernel_filters_agree_with_the_row_path(kind: str, spec: dict[str, Any]) -> None:
    node: Any = FILTER.validate_python({**spec, "dimension": "x"})
    rng = random.Random(str(spec))
    values = _values(kind, rng, 2000)
    column = column_of(values)
    assert column is not None
    assert transforms._kernel_mask(node, column) is not None  # the kernel path is the one tested
    rows = [{"x": value} for value in values]
    expected = [node.evaluate(row) for row in rows]
    assert filter_mask(node, {"x": column}, len(rows), lambda: rows).to_pylist() == expected


def test_filters_without_a_kernel_keep_the_per_value_path() -> None:
    lexicographic: Any = FILTER.validate_python({"type": "bound", "dimension": "x", "lower": "a"})
    assert transforms._kernel_mask(lexicographic, pa.array(["a", "b"])) is None
    upper: Any = FILTER.validate_python(
        {"type": "selector", "dimension": "x", "value": "A", "extractionFn": {"type": "upper"}}
    )
    assert transforms._kernel_mask(upper, pa.array(["a", "b"])) is None
    numeric_on_strings: Any = FILTER.validate_python(
        {"type": "bound", "dimension": "x", "lower": "1", "ordering": "numeric"}
    )
    assert transforms._kernel_mask(numeric_on_strings, pa.array(["1", "x"])) is None
