"""The wheel contains every module (passes/, frontends/, fuzz/ mapped into
the tensoropt namespace, and the grammar file), and each imports from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"tensoropt": "tensoropt", "passes": "tensoropt/passes", "frontends": "tensoropt/frontends",
           "fuzz": "tensoropt/fuzz"}


def expected_files() -> set[str]:
    out = set()
    for src, dest in SOURCES.items():
        for p in (ROOT / src).rglob("*"):
            if p.suffix in (".py", ".lark") and "__pycache__" not in p.parts:
                rel = p.relative_to(ROOT / src)
                if src == "tensoropt" and rel.parts[0] in ("passes", "frontends", "fuzz"):
                    continue
                out.add(f"{dest}/{rel.as_posix()}")
    return out


def test_wheel_has_and_imports_every_module(tmp_path: Path) -> None:
    # Build from a copy of the tracked files: setuptools leaves build/ and
    # *.egg-info beside the sources, which must not litter the checkout.
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("tensoropt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = expected_files() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__") for n in names
                     if n.endswith(".py") and n.startswith("tensoropt/") and not n.endswith("__main__.py"))
    code = ("import importlib, tensoropt, sys\n"
            f"assert tensoropt.__file__.startswith({str(target)!r}), tensoropt.__file__\n"
            f"for m in {modules!r}: importlib.import_module(m)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    # -I would drop PYTHONPATH; -P-like isolation: run from tmp so the source tree is not on sys.path.
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
