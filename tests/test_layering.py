"""Imports run one way, from the ground up (DESIGN.md, "Layout").

Everything below the API (the IR, the op tables, the interpreter, the
frontends, codegen, the runtime and its measuring interface, the passes and
the fuzz generators) must not import the API, the compiler entry point, the
bench module, the ``torch.compile`` backend or the CLI, not even inside a
function: a pass that measures goes through ``tensoropt.runtime.measure``.
The CLI's command modules share helpers through ``cli.common`` only, never
through the package's main module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: folders and modules below the API, and the dotted package each maps to
BELOW_API = {
    "tensoropt/ir": "tensoropt.ir",
    "tensoropt/ops": "tensoropt.ops",
    "tensoropt/interp.py": "tensoropt",
    "tensoropt/codegen": "tensoropt.codegen",
    "tensoropt/runtime": "tensoropt.runtime",
    "tensoropt/tune": "tensoropt.tune",
    "frontends": "tensoropt.frontends",
    "passes": "tensoropt.passes",
    "fuzz": "tensoropt.fuzz",
}

#: the modules above: nothing below may import them
ABOVE = ("tensoropt.api", "tensoropt.compiler", "tensoropt.bench", "tensoropt.dynamo", "tensoropt.cli",
         "tensoropt.demo", "tensoropt.backend")


def _package_of(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("") if root.is_dir() else Path()
    parts = [package, *rel.parts[:-1]] if root.is_dir() else [package]
    return ".".join(parts)


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute dotted names, relative ones resolved), with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # `from tensoropt import api` names the module in the alias
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _below_api_files() -> list[tuple[Path, str]]:
    files = []
    for rel, package in BELOW_API.items():
        root = ROOT / rel
        paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
        files += [(p, _package_of(p, root, package)) for p in paths]
    return files


def _is_above(mod: str) -> bool:
    return any(mod == a or mod.startswith(a + ".") for a in ABOVE)


def test_the_scan_sees_the_modules_and_their_imports() -> None:
    files = _below_api_files()
    assert len(files) > 80
    measure = ROOT / "passes/derive/measure.py"
    mods = {m for _, m in _imports(measure, "tensoropt.passes.derive")}
    assert "tensoropt.runtime.measure" in mods
    # relative imports resolve against the module's package
    runtime = {m for _, m in _imports(ROOT / "tensoropt/runtime/measure.py", "tensoropt.runtime")}
    assert {"tensoropt.runtime.model", "tensoropt.ir.graph", "tensoropt.codegen.build"} <= runtime
    assert _is_above("tensoropt.cli.common") and not _is_above("tensoropt.codegen.build")


_FILES = _below_api_files()


@pytest.mark.parametrize("path, package", _FILES, ids=[str(p.relative_to(ROOT)) for p, _ in _FILES])
def test_no_module_below_the_api_imports_above_it(path: Path, package: str) -> None:
    bad = [(line, mod) for line, mod in _imports(path, package) if _is_above(mod)]
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(f'{m} (line {n})' for n, m in bad)}"


def test_cli_command_modules_share_helpers_through_common_only() -> None:
    cli = ROOT / "tensoropt/cli"
    for path in sorted(cli.glob("*.py")):
        if path.name in ("__init__.py", "__main__.py", "main.py"):
            continue
        mods = {m for _, m in _imports(path, "tensoropt.cli")}
        assert "tensoropt.cli.main" not in mods and "tensoropt.cli" not in mods, path.name
