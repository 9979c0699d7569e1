"""Every spec of the corpus (tests/data/specs) parses or is refused as expected.json says.

The same corpus is POSTed to a running Overlord in tests/e2e/test_spec_corpus.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import InvalidSpec
from supervisor.spec import read_supervisor_spec

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
EXPECTED: dict[str, dict[str, Any]] = json.loads((SPECS / "expected.json").read_text())


def test_the_corpus_has_25_specs_each_with_an_expectation_and_a_source() -> None:
    files = sorted(p.name for p in SPECS.glob("*.json") if p.name != "expected.json")
    assert len(files) >= 25
    assert files == sorted(EXPECTED)
    sources = (SPECS / "SOURCES.md").read_text()
    assert all(f"`{name}`" in sources for name in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_spec_parses_as_expected(name: str) -> None:
    expected = EXPECTED[name]
    doc = json.loads((SPECS / name).read_text())
    if expected["outcome"] == "refused":
        with pytest.raises(InvalidSpec) as info:
            read_supervisor_spec(doc)
        assert expected["message"] in str(info.value)
        return
    parsed = read_supervisor_spec(doc)
    assert list(parsed.notes.ignored_fields) == expected.get("ignoredFields", [])
    again = read_supervisor_spec(parsed.spec.to_json() | parsed.notes.members())
    assert again.spec == parsed.spec
