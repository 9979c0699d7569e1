"""``csv`` and ``tsv``/``delimited`` records, parsed columnar by Arrow's CSV reader.

Druid's behaviour followed (docs/ingestion/data-formats.md "CSV" and "TSV (Delimited)";
Druid's ``CsvInputFormat``, ``DelimitedInputFormat`` and ``DelimitedValueReader``):

* each line of a record is a row (a Kafka record is one or more lines; line breaks are
  ``\\n``, ``\\r\\n`` or ``\\r``), so a quoted value cannot span lines;
* ``csv`` lines are RFC 4180 (opencsv's ``RFC4180Parser``): a value may be quoted with
  ``"``, a quote inside a quoted value is doubled; an unquoted empty value is null and a
  quoted empty one (``""``) the empty string (SQL-compatible null handling);
* ``tsv``/``delimited`` lines are split on ``delimiter`` (default tab) with no quoting, an
  empty value is null;
* ``skipHeaderRows`` lines of each record are skipped, then with ``findColumnsFromHeader``
  the next line names the columns (``columns`` is ignored then);
* a value holding ``listDelimiter`` (default ctrl+A) is a multi-value: split on it.

Unlike Druid, which pairs names and values as far as both go, a line with more or fewer
values than there are columns is an unparseable record (issue 13: wrong column counts
are bad records, counted and sent to the dead-letter topic).

A batch is parsed in one call of Arrow's reader when its records are one line each and
there is no header; otherwise the lines of all records are gathered (per header) and
parsed together. A parse that fails is retried on halves until the bad lines are found,
so one bad record costs a few extra parses, not one per record.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from middlemanager.ingest.formats import DecodedBatch, register
from supervisor.records import RecordBatch
from supervisor.spec import CsvInputFormat, DelimitedInputFormat

__all__ = ["DelimitedReader"]

# Stand-ins for a multi-character delimiter, which Arrow's reader cannot take.
_STAND_INS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c")
# How much of a bad line goes into an error message.
_LINE_TEXT = 256


def _line_text(line: bytes) -> str:
    text = line[:_LINE_TEXT].decode("utf-8", errors="replace")
    return text + "..." if len(line) > _LINE_TEXT else text


def _first_error_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


class DelimitedReader:
    """Reads the records of one ``csv`` or ``tsv``/``delimited`` input format."""

    def __init__(self, fmt: CsvInputFormat | DelimitedInputFormat) -> None:
        self.quoted = isinstance(fmt, CsvInputFormat)
        self._separator = fmt.separator.encode("utf-8")
        self._columns = None if fmt.header_row else list(fmt.columns or ())
        self._header = fmt.header_row
        self._skip = fmt.skip_header_rows
        self._list_delimiter = fmt.effective_list_delimiter

    # ------------------------------------------------------------------ entry points

    def decode(self, batch: RecordBatch) -> DecodedBatch:
        return self.decode_values(batch.values)

    def decode_values(self, values: list[bytes | None]) -> DecodedBatch:
        n = len(values)
        if n and not self._header and not self._skip and self._columns is not None:
            table = self._whole_batch(values)
            if table is not None:
                return self._finish([(table, list(range(n)))], [])
        return self._by_lines(values)

    # ------------------------------------------------------------------ parsing

    def _whole_batch(self, values: list[bytes | None]) -> pa.Table | None:
        """The batch in one parse, when every record is exactly one non-empty line."""
        assert self._columns is not None
        try:
            data = b"\n".join(values)  # type: ignore[arg-type]  # a None makes join fail
        except TypeError:
            return None
        n = len(values)
        if b"\r" in data or data.count(b"\n") != n - 1 or not all(values):
            return None
        try:
            table = self._parse(data, self._columns)
        except (pa.ArrowInvalid, ValueError):
            return None
        return table if table.num_rows == n else None

    def _by_lines(self, values: list[bytes | None]) -> DecodedBatch:
        errors: list[tuple[int, str]] = []
        # column names (as a tuple) -> the data lines and the record each comes from
        groups: dict[tuple[str, ...], tuple[list[bytes], list[int]]] = {}
        for index, value in enumerate(values):
            if not value:
                errors.append((index, "Unable to parse row []: the record has no value (tombstone)"))
                continue
            lines = value.splitlines()[self._skip :]
            columns = self._columns
            if self._header:
                if not lines:
                    errors.append((index, "Unable to parse the header row: the record has no line left"))
                    continue
                header, lines = lines[0], lines[1:]
                try:
                    columns = self._header_columns(header)
                except ValueError as e:
                    errors.append((index, f"Unable to parse header [{_line_text(header)}]: {e}"))
                    continue
            assert columns is not None
            data_lines = [line for line in lines if line]
            if not data_lines:
                continue
            group = groups.setdefault(tuple(columns), ([], []))
            group[0].extend(data_lines)
            group[1].extend([index] * len(data_lines))
        parts: list[tuple[pa.Table, list[int]]] = []
        for names, (lines, sources) in groups.items():
            self._parse_lines(lines, sources, list(names), parts, errors)
        errors.sort()
        return self._finish(parts, errors)

    def _parse_lines(
        self,
        lines: list[bytes],
        sources: list[int],
        columns: list[str],
        parts: list[tuple[pa.Table, list[int]]],
        errors: list[tuple[int, str]],
    ) -> None:
        """Parse lines together; on failure, each half on its own, down to the bad lines."""
        try:
            table = self._parse(b"\n".join(lines), columns)
            if table.num_rows == len(lines):
                parts.append((table, sources))
                return
            problem = f"{table.num_rows} rows read from {len(lines)} lines"
        except (pa.ArrowInvalid, ValueError) as e:
            problem = _first_error_line(str(e))
        if len(lines) == 1:
            # a record is bad as a whole: its other lines are dropped with it below
            errors.append((sources[0], f"Unable to parse row [{_line_text(lines[0])}]: {problem}"))
            return
        middle = len(lines) // 2
        self._parse_lines(lines[:middle], sources[:middle], columns, parts, errors)
        self._parse_lines(lines[middle:], sources[middle:], columns, parts, errors)

    def _header_columns(self, header: bytes) -> list[str]:
        try:
            # (a line break after it: Arrow cannot count the columns of a lone unterminated line)
            table = self._parse(header + b"\n", None)
        except (pa.ArrowInvalid, ValueError) as e:
            raise ValueError(_first_error_line(str(e))) from None
        if table.num_rows != 1:
            raise ValueError("the header is not one line")
        names = [
            value if value else f"column_{index + 1}"  # Druid names a nameless column column_N
            for index, value in enumerate(table.slice(0, 1).to_pylist()[0].values())
        ]
        if len(set(names)) != len(names):
            raise ValueError("duplicate column names")
        return names

    def _parse(self, data: bytes, columns: list[str] | None) -> pa.Table:
        """One Arrow CSV parse: string columns named ``columns`` (or by position when ``None``)."""
        separator = self._separator
        if len(separator) != 1:
            stand_in = next((s for s in _STAND_INS if s not in data), None)
            if stand_in is None:
                return self._split_in_python(data, columns)
            data = data.replace(separator, stand_in)
            separator = stand_in
        names = columns
        read = pacsv.ReadOptions(
            column_names=names,
            autogenerate_column_names=names is None,
            use_threads=len(data) > (1 << 20),
            block_size=max(1 << 20, len(data) // 4 + 1),
        )
        parse = pacsv.ParseOptions(
            delimiter=separator.decode("latin-1"),
            quote_char='"' if self.quoted else False,
            double_quote=True,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
        )
        convert = pacsv.ConvertOptions(
            check_utf8=True,
            column_types=None if names is None else dict.fromkeys(names, pa.string()),
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=False,
        )
        table = pacsv.read_csv(
            io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert
        )
        if names is None:
            # header lines: every value as a string
            table = table.cast(pa.schema([pa.field(f.name, pa.string()) for f in table.schema]))
        return table

    def _split_in_python(self, data: bytes, columns: list[str] | None) -> pa.Table:
        """Lines split on a multi-byte delimiter when no stand-in byte is free (rare)."""
        rows = [line.split(self._separator) for line in data.split(b"\n") if line]
        width = len(columns) if columns is not None else (len(rows[0]) if rows else 0)
        for line_values in rows:
            if len(line_values) != width:
                raise ValueError(f"Expected {width} columns, got {len(line_values)}")
        names = columns if columns is not None else [f"f{i}" for i in range(width)]
        arrays = [
            pa.array([v.decode("utf-8") if v else None for v in (r[i] for r in rows)], type=pa.string())
            for i in range(width)
        ]
        return pa.Table.from_arrays(arrays, names=names)

    # ------------------------------------------------------------------ multi-values

    def _finish(self, parts: list[tuple[pa.Table, list[int]]], errors: list[tuple[int, str]]) -> DecodedBatch:
        bad = {index for index, _ in errors}
        tables: list[pa.Table] = []
        sources: list[int] = []
        for table, part_sources in parts:
            if bad and any(source in bad for source in part_sources):
                keep = pa.array([source not in bad for source in part_sources])
                table = table.filter(keep)
                part_sources = [source for source in part_sources if source not in bad]
            tables.append(table)
            sources.extend(part_sources)
        if not tables:
            return DecodedBatch(table=pa.table({}), sources=[], errors=errors)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        if len(tables) > 1:
            order = sorted(range(len(sources)), key=sources.__getitem__)
            table = table.take(pa.array(order, type=pa.int64()))
            sources = [sources[i] for i in order]
        table, multi = self._split_multi_values(table)
        return DecodedBatch(table=table, sources=sources, errors=errors, single_lists=multi)

    def _split_multi_values(self, table: pa.Table) -> tuple[pa.Table, tuple[str, ...]]:
        """Columns with a ``listDelimiter`` in some value become lists (Druid's multi-values)."""
        delimiter = self._list_delimiter
        multi: list[str] = []
        for index, name in enumerate(table.column_names):
            column = table.column(index)
            if column.null_count == len(column) or not pc.any(pc.match_substring(column, delimiter)).as_py():
                continue
            table = table.set_column(index, name, pc.split_pattern(column, delimiter))
            multi.append(name)
        return table, tuple(multi)


@register("csv", "tsv", "delimited")
def _delimited(fmt: Any) -> DelimitedReader:
    return DelimitedReader(fmt)
