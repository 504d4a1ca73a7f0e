"""README and docs performance tables are generated from the results JSON
(``benchmarks/report.py``): none may differ from what its JSON renders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402 - a script folder, not a package


def test_every_marked_table_matches_its_json() -> None:
    assert report.stale() == []


def test_every_table_has_a_place_in_the_docs() -> None:
    placed = {name for doc in report.DOCS for name, *_ in report.blocks(doc.read_text(), doc.name)}
    assert placed == set(report.TABLES)


def test_a_hand_edited_number_is_found_and_rewritten() -> None:
    body = report.TABLES["symbolic_speed"]()
    edited = body.replace("| small_cnn | 1 |", "| small_cnn | 1 | 9.99 |", 1)
    assert edited != body
    text = f"intro\n<!-- report:symbolic_speed -->\n{edited}\n<!-- /report:symbolic_speed -->\nafter\n"
    new, changed = report.render(text, "doc.md")
    assert changed == ["symbolic_speed"]
    assert new == f"intro\n<!-- report:symbolic_speed -->\n{body.rstrip()}\n<!-- /report:symbolic_speed -->\nafter\n"
    assert report.render(new, "doc.md")[1] == []  # rendering is a fixed point


@pytest.mark.parametrize("text, msg", [
    ("<!-- report:nope -->\nx\n<!-- /report:nope -->\n", "doc.md: unknown table 'nope'"),
    ("<!-- report:model_speed -->\nx\n", "doc.md: table 'model_speed' has no <!-- /report:NAME --> end marker"),
])
def test_bad_markers_are_named(text: str, msg: str) -> None:
    with pytest.raises(report.ReportError, match=msg):
        report.blocks(text, "doc.md")
