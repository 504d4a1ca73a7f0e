"""Tuning records survive kill -9: every completely written record is there
after repair, in order, and TVM's own JSONDatabase opens the result."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensoropt.tune.records import RECORDS, WORKLOADS, RecordsError, locked, measured, repair


def _wl(k: int) -> str:
    return json.dumps([str(1000 + k), "QUJD" * (20 + k)], separators=(",", ":")) + "\n"


def _rec(w: int, secs: float) -> str:
    body = [[[], []], [secs], {"keys": ["cpu"], "kind": "llvm", "tag": ""}, [["TENSOR", "float32", [4, 4]]]]
    return json.dumps([w, body], separators=(",", ":")) + "\n"


def _db(d: Path, n_wl: int = 2, n_rec: int = 6) -> tuple[list[str], list[str]]:
    wls = [_wl(k) for k in range(n_wl)]
    recs = [_rec(k % n_wl, 1e-3 * (k + 1)) for k in range(n_rec)]
    (d / WORKLOADS).write_text("".join(wls))
    (d / RECORDS).write_text("".join(recs))
    return wls, recs


def _records(d: Path) -> list[list]:
    return [json.loads(line) for line in (d / RECORDS).read_text().splitlines()]


def test_intact_database_is_left_byte_for_byte(tmp_path: Path) -> None:
    _db(tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in (WORKLOADS, RECORDS)}
    rep = repair(tmp_path)
    assert not rep.changed and rep.workloads == 2 and rep.records == 6 and "intact" in rep.summary()
    assert {p: (tmp_path / p).read_bytes() for p in (WORKLOADS, RECORDS)} == before


def test_every_kill_point_in_the_last_record_keeps_all_earlier_records(tmp_path: Path) -> None:
    wls, recs = _db(tmp_path, n_rec=5)
    full = "".join(recs)
    start = len("".join(recs[:-1]))
    for cut in range(start, len(full) + 1):
        (tmp_path / WORKLOADS).write_text("".join(wls))
        (tmp_path / RECORDS).write_text(full[:cut])
        rep = repair(tmp_path)
        got = _records(tmp_path)
        written = 5 if cut >= len(full) - 1 else 4  # the record's JSON complete, newline or not
        assert got == [json.loads(r) for r in recs[:written]], cut
        assert (tmp_path / RECORDS).read_bytes().endswith(b"\n")
        assert rep.records == written and rep.changed == (cut not in (start, len(full)))  # whole lines: intact


def test_glued_lines_are_split_and_nothing_is_lost(tmp_path: Path) -> None:
    wls, recs = _db(tmp_path, n_rec=3)
    # killed between a record and its newline, then the next run appended another
    (tmp_path / RECORDS).write_text(recs[0] + recs[1].rstrip("\n") + recs[2])
    (tmp_path / WORKLOADS).write_text(wls[0].rstrip("\n") + wls[1])
    rep = repair(tmp_path)
    assert rep.glued_split == 2 and rep.workloads == 2 and rep.records == 3
    assert _records(tmp_path) == [json.loads(r) for r in recs]
    assert len((tmp_path / WORKLOADS).read_text().splitlines()) == 2


def test_a_cut_workload_drops_only_its_own_record(tmp_path: Path) -> None:
    wls, recs = _db(tmp_path, n_rec=2)
    (tmp_path / WORKLOADS).write_text(wls[0] + wls[1][:10])  # the second workload's write was cut
    (tmp_path / RECORDS).write_text(_rec(0, 1e-3))
    rep = repair(tmp_path)
    assert rep.workloads == 1 and rep.records == 1 and WORKLOADS in rep.tail_bytes_dropped


def test_damage_in_the_middle(tmp_path: Path) -> None:
    wls, recs = _db(tmp_path, n_rec=4)
    # a record line in the middle: dropped, counted, the original kept
    (tmp_path / RECORDS).write_text(recs[0] + "garbage\n" + "".join(recs[1:]))
    rep = repair(tmp_path)
    assert rep.bad_records_dropped == [2] and rep.records == 4
    assert "garbage" in (tmp_path / (RECORDS + ".bak")).read_text()
    # a workload line in the middle would shift indices: refused, files untouched
    bad = wls[0] + "{not json\n" + wls[1]
    (tmp_path / WORKLOADS).write_text(bad)
    with pytest.raises(RecordsError, match=rf"{WORKLOADS}:2: not a JSON workload line"):
        repair(tmp_path)
    assert (tmp_path / WORKLOADS).read_text() == bad
    # a record of a workload that does not exist, not at the tail
    (tmp_path / WORKLOADS).write_text("".join(wls))
    (tmp_path / RECORDS).write_text(_rec(7, 1e-3) + recs[0])
    with pytest.raises(RecordsError, match=r":1: record of workload 7, but .* has 2"):
        repair(tmp_path)


def test_measured_counts_valid_and_failed_per_workload(tmp_path: Path) -> None:
    _db(tmp_path, n_wl=1, n_rec=0)
    (tmp_path / RECORDS).write_text(_rec(0, 1e-3) + _rec(0, 1e10) + _rec(0, 2e-3))
    assert measured(tmp_path) == {0: (2, 1)}
    assert measured(tmp_path / "missing") == {}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), frac=st.floats(0, 1), glue=st.booleans())
def test_property_completed_records_survive_any_kill(tmp_path_factory, n: int, frac: float, glue: bool) -> None:
    d = tmp_path_factory.mktemp("db")
    wls, recs = _db(d, n_wl=3, n_rec=n)
    data = "".join(recs)
    cut = int(frac * len(data))
    text = data[:cut]
    if glue and text.endswith("\n"):
        text = text[:-1]  # killed just before a newline
    (d / RECORDS).write_text(text)
    repair(d)
    done = [r for k, r in enumerate(recs) if len("".join(recs[:k + 1])) - 1 <= len(text)]
    assert _records(d) == [json.loads(r) for r in done]
    # appending after repair (what the next run does) keeps everything
    with open(d / RECORDS, "a") as f:
        f.write(_rec(1, 5e-3))
    repair(d)
    assert _records(d)[-1][0] == 1 and len(_records(d)) == len(done) + 1


def _hold(d: str, ready, release) -> None:  # type: ignore[no-untyped-def]
    with locked(d):
        ready.set()
        release.wait(10)


def test_lock_names_the_holder_and_dies_with_it(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    p.start()
    assert ready.wait(10)
    with pytest.raises(RecordsError, match=rf"in use by pid {p.pid}"):
        with locked(tmp_path):
            pass
    os.kill(p.pid, 9)  # kill -9: the lock goes with the process
    p.join(10)
    with locked(tmp_path) as d:
        assert d == tmp_path


def test_tvm_opens_a_repaired_database(tmp_path: Path) -> None:
    """A database written by TVM, cut mid-record as kill -9 would, repaired: TVM opens it with every
    complete record (without the repair it refuses to open at all)."""
    import tvm
    from tvm import te
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    a = te.placeholder((16, 16), name="A")
    f = te.create_prim_func([a, te.compute((16, 16), lambda i, j: a[i, j] * 2.0, name="B")])
    mod = tvm.IRModule({"main": f})
    db = ms.database.JSONDatabase(work_dir=str(tmp_path))
    wl = db.commit_workload(mod)
    target, args = tvm.target.Target("llvm"), ms.arg_info.ArgInfo.from_prim_func(f)
    for k in range(3):
        db.commit_tuning_record(ms.database.TuningRecord(Schedule(mod).trace, wl, [1e-3 * (k + 1)], target, args))
    path = tmp_path / RECORDS
    path.write_bytes(path.read_bytes()[:-25])  # the third record's write cut short
    with pytest.raises(Exception):
        ms.database.JSONDatabase(work_dir=str(tmp_path))
    rep = repair(tmp_path)
    assert rep.records == 2 and rep.tail_bytes_dropped
    reopened = ms.database.JSONDatabase(work_dir=str(tmp_path))
    secs = sorted(float(r.run_secs[0]) for r in reopened.get_all_tuning_records())
    assert secs == pytest.approx([1e-3, 2e-3])
    assert measured(tmp_path) == {0: (2, 0)}
