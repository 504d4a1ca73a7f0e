"""`make demo` runs the bundled example end to end; its report is sound and
shows every cleanup pass doing real work on the conv block."""

from __future__ import annotations

import json

from tensoropt.demo import run_demo


def test_demo_report(capsys) -> None:
    assert run_demo(as_json=True) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["max_rel_diff"] < 1e-5
    by_pass = {p["pass"]: p for p in r["passes"]}
    # the example holds exactly one of each leftover: a foldable constant product,
    # a duplicated relu, a dead exp; fusion then merges elementwise chains.
    assert by_pass["fold-constants"]["nodes_after"] == by_pass["fold-constants"]["nodes_before"] - 1
    assert by_pass["cse"]["nodes_after"] == by_pass["cse"]["nodes_before"] - 1
    assert by_pass["dce"]["nodes_after"] == by_pass["dce"]["nodes_before"] - 1
    assert by_pass["fuse-elementwise"]["nodes_after"] < by_pass["fuse-elementwise"]["nodes_before"]
    assert r["after"]["nodes"] < r["before"]["nodes"]


def test_demo_text_report(capsys) -> None:
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert "soundness" in out and "sound" in out and "MISMATCH" not in out
    assert "optimized graph" in out
