"""Specs of Druid before 0.18: ``dataSchema.parser`` translated into today's form.

Druid 0.18 moved the record format out of ``dataSchema.parser.parseSpec`` into
``ioConfig.inputFormat``, and the parse spec's ``timestampSpec``/``dimensionsSpec`` up into
``dataSchema`` (Druid's docs, "Migrating from 'parser' to 'inputFormat'", data-formats.md).
Current Druid refuses a Kafka spec with a ``parser``; we translate it the way that page maps
the old fields onto the new ones:

=========================================  ====================================================
``parser`` (``type``) / ``parseSpec`` (``format``)     ``ioConfig.inputFormat``
=========================================  ====================================================
``string`` / ``json``                       ``json`` (``flattenSpec``, ``featureSpec``)
``string`` / ``csv``                        ``csv`` (``columns``, ``listDelimiter``, ``hasHeaderRow`` ->
                                            ``findColumnsFromHeader``, ``skipHeaderRows``)
``string`` / ``tsv``                        ``tsv`` (the same and ``delimiter``)
``string`` / ``regex``                      ``regex`` (``pattern``, ``columns``, ``listDelimiter``)
``avro_stream`` / ``avro``|``timeAndDims``  ``avro_stream`` (``avroBytesDecoder``, ``binaryAsString``,
                                            ``flattenSpec``)
``protobuf`` / ``json``|``timeAndDims``     ``protobuf`` (``protoBytesDecoder``, or ``descriptor`` and
                                            ``protoMessageType`` as a ``file`` decoder; ``flattenSpec``)
=========================================  ====================================================

``timeAndDims`` describes rows another parser has decoded; with the ``string`` parser Druid
cannot read a record with it (its parser throws "not supported"), so that pair is refused.
A translation to an input format the ingest engine cannot read yet is refused naming that
format. Everything works on the raw JSON, before the models see it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor._spec_common import SUPPORTED_INPUT_FORMATS, unsupported_input_format
from supervisor.errors import InvalidSpec

__all__ = ["Translation", "translate_parser"]

# parseSpec keys that move to dataSchema, and the format keys each inputFormat takes over.
_SCHEMA_KEYS = ("timestampSpec", "dimensionsSpec")
_DELIMITED = {"columns": "columns", "listDelimiter": "listDelimiter", "skipHeaderRows": "skipHeaderRows"}
_FORMAT_KEYS: dict[str, dict[str, str]] = {
    "json": {
        "flattenSpec": "flattenSpec",
        "featureSpec": "featureSpec",
        "keepNullColumns": "keepNullColumns",
    },
    "csv": {**_DELIMITED, "hasHeaderRow": "findColumnsFromHeader"},
    "tsv": {**_DELIMITED, "hasHeaderRow": "findColumnsFromHeader", "delimiter": "delimiter"},
    "regex": {"pattern": "pattern", "columns": "columns", "listDelimiter": "listDelimiter"},
    "avro": {"flattenSpec": "flattenSpec"},
    "timeAndDims": {},
}
_PARSER_KEYS = {
    "string": {"type", "parseSpec"},
    "avro_stream": {"type", "parseSpec", "avroBytesDecoder", "binaryAsString", "extractUnionsByType"},
    "protobuf": {"type", "parseSpec", "descriptor", "protoMessageType", "protoBytesDecoder"},
}
_NO_INPUT_FORMAT = {
    "jsonLowercase": "lower-cases field names, which no inputFormat does",
    "javascript": "runs JavaScript, which no inputFormat does",
}


@dataclass
class Translation:
    """The translated document and what the translation did."""

    doc: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # Keys of the parser and parseSpec that no translation carries (their paths, as written).
    ignored: list[list[str | int]] = field(default_factory=list)
    # (translated location, location as written), to name the user's keys in later errors.
    moved: list[tuple[str, str]] = field(default_factory=list)

    def original_path(self, path: str) -> str:
        """A path of the translated document as the user wrote it."""
        for new, old in self.moved:
            if path == new or path.startswith((new + ".", new + "[")):
                return old + path[len(new) :]
        return path


def translate_parser(doc: Mapping[str, Any], prefix: str) -> Translation:
    """Translate ``dataSchema.parser`` of a flat spec (``{"dataSchema":..., "ioConfig":...}``).

    ``prefix`` is ``"spec."`` when the user wrapped the spec (it starts every shown path).
    A document without a parser comes back unchanged.
    """
    out = copy.deepcopy(dict(doc))
    schema = out.get("dataSchema")
    if not isinstance(schema, dict) or schema.get("parser") is None:
        return Translation(out)
    here = f"{prefix}dataSchema.parser"
    parser = schema.pop("parser")
    if not isinstance(parser, dict):
        raise InvalidSpec(here, "must be a JSON object")
    # InputRowParser's default type is "string" (StringInputRowParser).
    kind = parser.get("type") or "string"
    if kind not in _PARSER_KEYS:
        raise InvalidSpec(
            f"{here}.type",
            f"legacy parser type '{kind}' has no inputFormat here "
            "(the string, avro_stream and protobuf parsers are translated)",
        )
    io = out.get("ioConfig")
    if isinstance(io, dict) and io.get("inputFormat") is not None:
        # DataSchema: "Cannot use parser and inputFormat together."
        raise InvalidSpec(here, "cannot be used together with ioConfig.inputFormat: remove one of them")
    parse_spec = parser.get("parseSpec")
    if not isinstance(parse_spec, dict):
        problem = "is required (a JSON object)" if parse_spec is None else "must be a JSON object"
        raise InvalidSpec(f"{here}.parseSpec", problem)
    spec_path = f"{here}.parseSpec"
    fmt = parse_spec.get("format")
    if not isinstance(fmt, str):
        raise InvalidSpec(f"{spec_path}.format", "is required" if fmt is None else "must be a string")
    translation = Translation(out)
    input_format = _input_format(kind, fmt, parser, parse_spec, prefix, translation)
    if input_format["type"] not in SUPPORTED_INPUT_FORMATS:
        raise InvalidSpec(
            here,
            f'translates to {prefix}ioConfig.inputFormat {{"type": "{input_format["type"]}"}}, and '
            + unsupported_input_format(input_format["type"]),
        )
    for key in _SCHEMA_KEYS:
        if parse_spec.get(key) is None:
            continue
        # Druid's own integration tests give both, equal; a different one is ambiguous.
        if schema.get(key) is not None and not _same(schema[key], parse_spec[key]):
            raise InvalidSpec(
                f"{prefix}dataSchema.{key}", f"is given twice, differently: here and in {spec_path}.{key}"
            )
        if schema.get(key) is None:
            schema[key] = parse_spec[key]
            translation.moved.append((f"{prefix}dataSchema.{key}", f"{spec_path}.{key}"))
    if not isinstance(io, dict):
        io = out["ioConfig"] = {}
    io["inputFormat"] = input_format
    translation.moved.append((f"{prefix}ioConfig.inputFormat", here))
    moved = ", ".join(f"{prefix}dataSchema.{key}" for key in _SCHEMA_KEYS if parse_spec.get(key) is not None)
    translation.notes.append(
        f"{here} (type '{kind}', parseSpec format '{fmt}') -> {prefix}ioConfig.inputFormat "
        f'{{"type": "{input_format["type"]}"}}' + (f", {moved}" if moved else "")
    )
    return translation


def _same(given: Any, legacy: Any) -> bool:
    """Whether two specs of one object mean the same: keys given empty ([], {}, null) are Druid's
    defaults (Druid's integration tests give ``dimensionExclusions: []`` on one side only)."""

    def meaning(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v not in (None, [], {})}
        return value

    return bool(meaning(given) == meaning(legacy))


def _input_format(
    kind: str,
    fmt: str,
    parser: dict[str, Any],
    parse_spec: dict[str, Any],
    prefix: str,
    translation: Translation,
) -> dict[str, Any]:
    here = f"{prefix}dataSchema.parser"
    spec_path = f"{here}.parseSpec"
    if fmt in _NO_INPUT_FORMAT:
        raise InvalidSpec(f"{spec_path}.format", f"parseSpec format '{fmt}' {_NO_INPUT_FORMAT[fmt]}")
    if fmt not in _FORMAT_KEYS:
        raise InvalidSpec(f"{spec_path}.format", f"unknown parseSpec format '{fmt}'")
    if kind == "string":
        if fmt == "timeAndDims":
            raise InvalidSpec(
                f"{spec_path}.format",
                "'timeAndDims' describes rows another parser decoded (avro_stream, protobuf); with the "
                "string parser Druid cannot read a record with it",
            )
        if fmt == "avro":
            raise InvalidSpec(f"{spec_path}.format", "parseSpec format 'avro' needs the avro_stream parser")
        input_format: dict[str, Any] = {"type": fmt}
    elif kind == "avro_stream":
        if fmt not in ("avro", "timeAndDims"):
            raise InvalidSpec(f"{spec_path}.format", "the avro_stream parser takes parseSpec format 'avro'")
        input_format = {"type": "avro_stream"}
        for key in ("avroBytesDecoder", "binaryAsString", "extractUnionsByType"):
            if parser.get(key) is not None:
                input_format[key] = parser[key]
    else:  # protobuf
        if fmt not in ("json", "timeAndDims"):
            raise InvalidSpec(f"{spec_path}.format", "the protobuf parser takes parseSpec format 'json'")
        input_format = {"type": "protobuf"}
        if parser.get("protoBytesDecoder") is not None:
            input_format["protoBytesDecoder"] = parser["protoBytesDecoder"]
        elif parser.get("descriptor") is not None:
            decoder = {"type": "file", "descriptor": parser["descriptor"]}
            if parser.get("protoMessageType") is not None:
                decoder["protoMessageType"] = parser["protoMessageType"]
            input_format["protoBytesDecoder"] = decoder
    format_keys = _FORMAT_KEYS[fmt] if kind == "string" else {"flattenSpec": "flattenSpec"}
    for old, new in format_keys.items():
        if parse_spec.get(old) is not None:
            input_format[new] = parse_spec[old]
            translation.moved.append((f"{prefix}ioConfig.inputFormat.{new}", f"{spec_path}.{old}"))
    # Keys no translation carries are reported as ignored, at the place they were written.
    carried = {"format", *_SCHEMA_KEYS, *format_keys}
    for key, value in parse_spec.items():
        if key not in carried and value is not None:
            translation.ignored.append([*spec_path.split("."), key])
    for key, value in parser.items():
        utf8 = key == "encoding" and isinstance(value, str) and value.replace("-", "").lower() == "utf8"
        if key not in _PARSER_KEYS[kind] and value is not None and not utf8:
            translation.ignored.append([*here.split("."), key])
    return input_format
