"""`make demo` runs the bundled example end to end: import, passes, TVM
compile, and a side-by-side run with onnxruntime. Its report is sound, and on
the conv block every cleanup pass does real work."""

from __future__ import annotations

import json

from tensoropt.demo import EXAMPLES, run_demo

FUSING = "fold-constants,cse,dce,fuse-elementwise"


def test_demo_default_changes_the_model_and_matches_onnxruntime(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", str(tmp_path))  # derive measures afresh
    assert run_demo(as_json=True) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["example"].endswith("small_cnn.onnx")
    assert r["max_rel_diff"] < 1e-5
    # the pipeline changes the model: batch bound, the batch norm folded into its conv
    assert r["pipeline"].startswith('bind-dims{dims="batch=1"},fold-batchnorm')
    by_pass = {p["pass"]: p for p in r["passes"]}
    assert by_pass["fold-batchnorm"]["nodes_after"] == by_pass["fold-batchnorm"]["nodes_before"] - 1
    ch = r["changes"]
    assert ["c1", "conv2d"] in ch["removed"] and ["bn", "batchnorm", "conv2d"] in ch["rewritten"]
    assert ["x", "f32[batch, 3, 64, 64]", "f32[1, 3, 64, 64]"] in ch["retyped"]
    # derive searched every convolution, measured, and decided by measurement
    dv = r["derive"]
    assert [n["node"] for n in dv["nodes"]] == ["bn", "dw", "pw", "c2"]
    for n in dv["nodes"]:
        assert n["states"] > 1 and n["original_ms"] > 0
        if n["decision"] == "rewritten":
            assert n["best_ms"] < n["original_ms"] and n["node"] in dv["model_check"]["kept"]
    assert dv["cached_timings"] == 0
    rewritten = [n["node"] for n in dv["nodes"] if n["decision"] == "rewritten"]
    sides = {s["side"]: s for s in r["compiled"]["sides"]}
    assert set(sides) == {"tensoropt, optimized (TVM)", "tensoropt, as imported (TVM)", "onnxruntime",
                          "tensoropt interpreter"}
    assert all(s["max_rel_diff"] < 1e-4 for s in sides.values())
    assert all(s["median_ms"] > 0 for s in sides.values())
    assert r["compiled"]["kernels"] > 0
    # every kernel got its family's schedule: none left unscheduled or to the
    # catch-all rule, no fallback
    schedules = r["compiled"]["schedules"]
    assert len(schedules) == r["compiled"]["kernels"] and r["compiled"]["fallbacks"] == []
    assert not [k for k, v in schedules.items() if v.startswith(("none", "generic"))], schedules
    if not rewritten:  # the four convs and the classifier
        assert sum(v.startswith(("gemm(", "gemv(")) for v in schedules.values()) == 5, schedules


def test_demo_report(capsys) -> None:
    assert run_demo(str(EXAMPLES / "conv_block.top"), pipeline=FUSING, as_json=True) == 0
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
    assert run_demo(str(EXAMPLES / "conv_block.top"), pipeline=FUSING) == 0
    out = capsys.readouterr().out
    assert "soundness" in out and "sound" in out and "MISMATCH" not in out
    assert "optimized graph" in out
    assert "compiled with TVM" in out and "onnxruntime" in out
    assert "kernels and their schedules" in out and "fallbacks: 0" in out
    assert "what changed" in out
