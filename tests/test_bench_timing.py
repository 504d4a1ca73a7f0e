"""``bench.interleaved_calls``: every side timed the same way, in blocks of
calls interleaved over rounds, in an order that rotates from round to round."""

from __future__ import annotations

import time

from tensoropt.bench import interleaved_calls


def _recorder(log: list[str], name: str, sleep: float = 0.0):
    def call() -> None:
        log.append(name)
        if sleep:
            time.sleep(sleep)
    return call


def test_blocks_interleave_and_rotate_after_the_warmup() -> None:
    log: list[str] = []
    sides = {n: _recorder(log, n) for n in ("a", "b", "c")}
    runs, failed = interleaved_calls(sides, warmup=2, repeat=7, rounds=3, settle_s=0)
    assert failed == {}
    assert {n: len(r) for n, r in runs.items()} == {"a": 7, "b": 7, "c": 7}
    assert log[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up: each side on its own
    # blocks of 3, 2, 2 timed calls, each after one untimed call; the order
    # rotates so that no side always follows the same one
    blocks = [("a", 4), ("b", 4), ("c", 4), ("b", 3), ("c", 3), ("a", 3), ("c", 3), ("a", 3), ("b", 3)]
    assert log[6:] == [n for n, k in blocks for _ in range(k)]


def test_a_side_that_raises_drops_out_and_the_others_go_on() -> None:
    log: list[str] = []
    calls = {"n": 0}

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("device lost\nsecond line")

    runs, failed = interleaved_calls({"ok": _recorder(log, "ok"), "flaky": flaky}, warmup=1, repeat=4,
                                    settle_s=0)
    assert failed == {"flaky": "RuntimeError: device lost"}
    assert set(runs) == {"ok"} and len(runs["ok"]) == 4


def test_max_seconds_shrinks_the_rounds_to_fit_the_slowest_side() -> None:
    log: list[str] = []
    sides = {"fast": _recorder(log, "fast"), "slow": _recorder(log, "slow", 0.02)}
    runs, _ = interleaved_calls(sides, warmup=1, repeat=50, max_seconds=0.1, min_repeat=2, settle_s=0)
    assert 2 <= len(runs["slow"]) <= 5 and len(runs["fast"]) == len(runs["slow"])
    runs, _ = interleaved_calls(sides, warmup=1, repeat=50, max_seconds=0.0001, min_repeat=3, settle_s=0)
    assert len(runs["slow"]) == 3  # never below min_repeat


def test_times_are_wall_clock_seconds() -> None:
    runs, _ = interleaved_calls({"s": lambda: time.sleep(0.01)}, warmup=0, repeat=2, settle_s=0)
    assert all(0.009 <= t < 0.5 for t in runs["s"])
