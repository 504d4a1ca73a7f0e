"""Graph files on disk: ``X.top`` text plus ``X.npz`` weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import tensoropt.ir.io as io_mod
from tensoropt.errors import InputFileError, ParseError
from tensoropt.ir.io import load_graph, save_graph, weights_path
from tensoropt.ir.parser import parse_graph

TEXT = """\
graph g(%x: f32[batch, 3]) {
  const %w: f32[3, 2]
  const %"a/b": i64[2]
  const %file: bool[]
  %y: f32[batch, 2] = matmul(%x, %w)
  return %y
}
"""


def _graph() -> object:
    g = parse_graph(TEXT)
    return g.replace(
        weights={
            "w": np.arange(6, dtype=np.float32).reshape(3, 2),
            "a/b": np.array([7, -8], dtype=np.int64),
            "file": np.array(True),  # a name np.savez(**kw) could not take
        }
    )


def test_round_trip_with_weights(tmp_path: Path) -> None:
    g = _graph()
    path = tmp_path / "m.top"
    save_graph(g, path)  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "m.top"]
    assert path.read_text(encoding="utf-8") == TEXT
    back = load_graph(path)
    assert back.same_as(g)  # type: ignore[arg-type]
    assert not back.weights["w"].flags.writeable


def test_no_constants_writes_no_npz(tmp_path: Path) -> None:
    g = parse_graph("graph g(%x: f32[]) {\n  return %x\n}\n")
    save_graph(g, tmp_path / "m.top")
    assert os.listdir(tmp_path) == ["m.top"]
    assert load_graph(str(tmp_path / "m.top")) == g


def test_missing_npz(tmp_path: Path) -> None:
    (tmp_path / "m.top").write_text(TEXT, encoding="utf-8")
    with pytest.raises(InputFileError, match=r"m\.npz: weights file missing; needed for constants %w, %a/b, %file"):
        load_graph(tmp_path / "m.top")


def test_missing_array(tmp_path: Path) -> None:
    save_graph(_graph(), tmp_path / "m.top")  # type: ignore[arg-type]
    np.savez(weights_path(tmp_path / "m.top"), w=np.zeros((3, 2), np.float32))
    with pytest.raises(InputFileError, match=r"m\.npz: no array for constant %a/b"):
        load_graph(tmp_path / "m.top")


def test_mismatched_shape(tmp_path: Path) -> None:
    path = tmp_path / "m.top"
    path.write_text(TEXT, encoding="utf-8")
    arrays: dict[str, np.ndarray] = {"w": np.zeros((2, 3), np.float32), "a/b": np.zeros(2, np.int64), "file": np.array(False)}
    io_mod.write_npz(weights_path(path), arrays)
    with pytest.raises(InputFileError, match=r"m\.npz: constant %w is declared f32\[3, 2\] but its array is f32\[2, 3\]"):
        load_graph(path)


def test_mismatched_dtype(tmp_path: Path) -> None:
    path = tmp_path / "m.top"
    path.write_text(TEXT, encoding="utf-8")
    arrays: dict[str, np.ndarray] = {"w": np.zeros((3, 2), np.float64), "a/b": np.zeros(2, np.int64), "file": np.array(False)}
    io_mod.write_npz(weights_path(path), arrays)
    with pytest.raises(InputFileError, match=r"constant %w is declared f32\[3, 2\] but its array is f64\[3, 2\]"):
        load_graph(path)


def test_corrupt_npz(tmp_path: Path) -> None:
    path = tmp_path / "m.top"
    path.write_text(TEXT, encoding="utf-8")
    weights_path(path).write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match=r"m\.npz: cannot read weights"):
        load_graph(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.top"
    path.write_bytes(b"graph g() {\n  return\n}\n\xff\xfe")
    with pytest.raises(InputFileError, match=r"bad\.top: not UTF-8 text"):
        load_graph(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.top: cannot read graph file"):
        load_graph(tmp_path / "nope.top")


def test_parse_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.top"
    path.write_text("graph g() {\n  oops\n}\n", encoding="utf-8")
    with pytest.raises(ParseError, match=rf"^{path}:2:3: unexpected 'oops'"):
        load_graph(path)


def test_failing_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.top"
    save_graph(_graph(), path)  # type: ignore[arg-type]
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(f: object, arrays: object) -> None:
        with open(f, "wb") as fh:  # type: ignore[call-overload]
            fh.write(b"half")  # a partial write, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(io_mod, "write_npz", boom)
    g2 = _graph().replace(name="changed")  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="disk full"):
        save_graph(g2, path)
    after = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # old files intact, no temp files left


def test_failing_text_write_keeps_old_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.top"
    save_graph(_graph(), path)  # type: ignore[arg-type]
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    real = Path.write_bytes

    def boom(self: Path, data: bytes) -> int:
        real(self, data[:5])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    new = _graph().replace(weights={"w": np.ones((3, 2), np.float32), "a/b": np.zeros(2, np.int64), "file": np.array(False)})  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        save_graph(new, path)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_save_without_weight_data_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no weight data for constants %w, %a/b, %file"):
        save_graph(parse_graph(TEXT), tmp_path / "m.top")
    assert os.listdir(tmp_path) == []
