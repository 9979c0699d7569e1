"""``dataSchema.metricsSpec``: Druid's ingestion-time aggregators as one frozen model.

Types and fields follow Druid's docs: docs/querying/aggregations.md (count, sums, mins, maxes,
first/last with ``timeColumn``, ``stringFirst``/``stringLast`` with ``maxStringBytes``, any,
``filtered``) and the DataSketches extension pages (docs/development/extensions-core/
datasketches-theta.md: ``thetaSketch`` with ``size`` and ``isInputThetaSketch``;
datasketches-hll.md: ``HLLSketchBuild``/``HLLSketchMerge`` with ``lgK``, ``tgtHllType`` and
``stringEncoding``; datasketches-quantiles.md: ``quantilesDoublesSketch`` with ``k``). A field
that belongs to another aggregator type is a 400 naming it. ``hyperUnique`` (Druid's own HLL
format, which no DataSketches library reads) is refused with a pointer to ``HLLSketchBuild``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from supervisor._spec_common import (
    ALWAYS,
    DruidModel,
    JsonBool,
    NonEmptyStr,
    PositiveInt,
    StrictInt,
    spec_problem,
)
from supervisor.filters import DimFilter

__all__ = [
    "FIRST_LAST_TYPES",
    "SKETCH_TYPES",
    "AggregatorSpec",
    "AggregatorType",
]

AggregatorType = Literal[
    "count",
    "longSum",
    "doubleSum",
    "floatSum",
    "longMin",
    "longMax",
    "doubleMin",
    "doubleMax",
    "floatMin",
    "floatMax",
    "longFirst",
    "longLast",
    "doubleFirst",
    "doubleLast",
    "floatFirst",
    "floatLast",
    "stringFirst",
    "stringLast",
    "longAny",
    "doubleAny",
    "floatAny",
    "stringAny",
    "filtered",
    "thetaSketch",
    "HLLSketchBuild",
    "HLLSketchMerge",
    "quantilesDoublesSketch",
]
_AGGREGATOR_TYPES: frozenset[str] = frozenset(get_args(AggregatorType))
FIRST_LAST_TYPES = frozenset(
    f"{kind}{which}" for kind in ("long", "double", "float", "string") for which in ("First", "Last")
)
_ANY_TYPES = frozenset(f"{kind}Any" for kind in ("long", "double", "float", "string"))
_STRING_TYPES = frozenset({"stringFirst", "stringLast", "stringAny"})
SKETCH_TYPES = frozenset({"thetaSketch", "HLLSketchBuild", "HLLSketchMerge", "quantilesDoublesSketch"})
_HLL_TYPES = frozenset({"HLLSketchBuild", "HLLSketchMerge"})

# Druid aggregator types this project refuses, with why (any other unknown type: "not supported yet").
_REFUSED = {
    "hyperUnique": (
        "aggregator type 'hyperUnique' is not supported: its sketch is Druid's own HyperLogLog format, "
        "which no DataSketches library reads; use 'HLLSketchBuild' (DataSketches HLL, readable by any "
        "DataSketches library) instead"
    ),
    "cardinality": (
        "aggregator type 'cardinality' is a query-time aggregator; use 'HLLSketchBuild' at ingestion"
    ),
    "doubleMean": "aggregator type 'doubleMean' is a query-time aggregator (Druid does not ingest it)",
}

# Which aggregator types each optional field belongs to (JSON name -> types).
_FIELD_OWNERS: dict[str, frozenset[str]] = {
    "timeColumn": FIRST_LAST_TYPES,
    "maxStringBytes": _STRING_TYPES,
    "aggregateMultipleValues": frozenset({"stringAny"}),
    "filter": frozenset({"filtered"}),
    "aggregator": frozenset({"filtered"}),
    "size": frozenset({"thetaSketch"}),
    "isInputThetaSketch": frozenset({"thetaSketch"}),
    "errorBoundsStdDev": frozenset({"thetaSketch"}),
    "lgK": _HLL_TYPES,
    "tgtHllType": _HLL_TYPES,
    "stringEncoding": _HLL_TYPES,
    "round": _HLL_TYPES,
    "k": frozenset({"quantilesDoublesSketch"}),
    "maxStreamLength": frozenset({"quantilesDoublesSketch"}),
    "shouldFinalize": SKETCH_TYPES,
}


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class AggregatorSpec(DruidModel):
    """One metric. ``name`` of a ``filtered`` aggregator defaults to its inner aggregator's name."""

    _not_supported_yet = ("expression",)
    # Query-time settings: kept, no effect on the stored column (Druid ignores them at ingestion).
    _unhonoured = {
        "shouldFinalize": True,
        "round": False,
        "errorBoundsStdDev": ALWAYS,
        "maxStreamLength": 1_000_000_000,
        "aggregateMultipleValues": True,
    }
    # Druid < 0.23's stringFirst/stringLast option.
    _druid_only = {"filterNullValues": False}

    type: AggregatorType
    name: NonEmptyStr
    field_name: NonEmptyStr | None = Field(default=None, alias="fieldName")
    # first/last: the LONG input column ordering the rows (Druid's default: the row time)
    time_column: NonEmptyStr | None = Field(default=None, alias="timeColumn")
    max_string_bytes: PositiveInt | None = Field(default=None, alias="maxStringBytes")
    aggregate_multiple_values: JsonBool | None = Field(default=None, alias="aggregateMultipleValues")
    # filtered
    filter: DimFilter | None = None
    aggregator: AggregatorSpec | None = None
    # thetaSketch
    size: PositiveInt | None = None
    is_input_theta_sketch: JsonBool | None = Field(default=None, alias="isInputThetaSketch")
    error_bounds_std_dev: StrictInt | None = Field(default=None, alias="errorBoundsStdDev")
    # HLLSketchBuild / HLLSketchMerge
    lg_k: StrictInt | None = Field(default=None, alias="lgK")
    tgt_hll_type: Literal["HLL_4", "HLL_6", "HLL_8"] | None = Field(default=None, alias="tgtHllType")
    string_encoding: Literal["utf16le", "utf8"] | None = Field(default=None, alias="stringEncoding")
    round: JsonBool | None = None
    # quantilesDoublesSketch
    k: StrictInt | None = None
    max_stream_length: StrictInt | None = Field(default=None, alias="maxStreamLength")
    should_finalize: JsonBool | None = Field(default=None, alias="shouldFinalize")

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("type")
        if isinstance(kind, str) and kind in _REFUSED:
            raise spec_problem(_REFUSED[kind], "type")
        if isinstance(kind, str) and kind not in _AGGREGATOR_TYPES:
            raise spec_problem(f"aggregator type '{kind}' is not supported yet", "type")
        if kind == "filtered" and data.get("name") is None and isinstance(data.get("aggregator"), dict):
            inner = data["aggregator"].get("name")
            if inner is not None:
                data = {**data, "name": inner}  # Druid: the wrapped aggregator's name
        for key, owners in _FIELD_OWNERS.items():
            if data.get(key) is not None and kind in _AGGREGATOR_TYPES and kind not in owners:
                raise spec_problem(f"is not allowed for a {kind} aggregator", key)
        return data

    @model_validator(mode="after")
    def _fields(self) -> AggregatorSpec:
        if self.type == "filtered":
            if self.field_name is not None:
                raise spec_problem("is not allowed for a filtered aggregator", "fieldName")
            if self.aggregator is None:
                raise spec_problem("is required", "aggregator")
            if self.filter is None:
                raise spec_problem("is required", "filter")
            if self.aggregator.type == "filtered":
                raise spec_problem(
                    "a filtered aggregator inside a filtered one is not supported", "aggregator"
                )
            return self
        if self.type == "count" and self.field_name is not None:
            raise spec_problem("is not allowed for a count aggregator", "fieldName")
        if self.type != "count" and self.field_name is None:
            raise spec_problem("is required", "fieldName")
        if self.size is not None and (self.size < 16 or not _power_of_two(self.size)):
            raise spec_problem("must be a power of 2 and at least 16", "size")
        if self.size == 16:
            # Druid (Java DataSketches) allows 16 nominal entries; the C++ library that builds the
            # sketches here starts at 32 (lg_k 5), so say so rather than fail every task.
            raise spec_problem("16 is below the 32 nominal entries this project's sketches support", "size")
        if self.lg_k is not None and not 4 <= self.lg_k <= 21:
            raise spec_problem("must be from 4 to 21", "lgK")
        if self.k is not None and (not 2 <= self.k <= 32768 or not _power_of_two(self.k)):
            raise spec_problem("must be a power of 2 from 2 to 32768", "k")
        return self

    # ---------------------------------------------------------------- what the engine reads

    @property
    def effective(self) -> AggregatorSpec:
        """The aggregator that computes the value (the wrapped one of a ``filtered``)."""
        return self.aggregator if self.aggregator is not None else self

    @property
    def theta_lg_k(self) -> int:
        """log2 of the theta sketch's nominal entries (``size``, Druid's default 16384)."""
        return (self.size or 16384).bit_length() - 1

    @property
    def hll_lg_k(self) -> int:
        return self.lg_k if self.lg_k is not None else 12

    @property
    def hll_type(self) -> str:
        return self.tgt_hll_type or "HLL_4"

    @property
    def hll_utf16(self) -> bool:
        """Strings hashed as UTF-16LE (Druid's default ``stringEncoding``) rather than UTF-8."""
        return (self.string_encoding or "utf16le") == "utf16le"

    @property
    def quantiles_k(self) -> int:
        return self.k if self.k is not None else 128

    @property
    def string_bytes(self) -> int:
        return self.max_string_bytes if self.max_string_bytes is not None else 1024
