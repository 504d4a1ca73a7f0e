"""The pass framework: pipeline text, option conversion, runner and verification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from tensoropt.errors import PipelineError, VerifyError
from tensoropt.ir.graph import Graph, Node, Value
from tensoropt.ir.parser import parse_graph
from tensoropt.passes import PASSES, Pass, PassReport, format_pipeline, parse_pipeline, register_pass, run_pipeline
from tensoropt.passes.cse import CommonSubexpressionElimination
from tensoropt.passes.dce import DeadCodeElimination
from tensoropt.passes.fold_constants import FoldConstants
from tensoropt.passes.fuse import FuseElementwise


@register_pass
@dataclass(frozen=True)
class _Knobs(Pass):
    """Test-only pass with one option of every supported type."""

    name: ClassVar[str] = "test-knobs"
    depth: int = 1
    scale: float = 0.5
    flag: bool = False
    label: str = "x"
    limit: int | None = None

    def apply(self, graph: Graph) -> Graph:
        return graph


@register_pass
@dataclass(frozen=True)
class _Breaker(Pass):
    """Test-only pass that breaks SSA (defines %x twice)."""

    name: ClassVar[str] = "test-breaker"

    def apply(self, graph: Graph) -> Graph:
        v = graph.inputs[0]
        return graph.replace(nodes=graph.nodes + (Node("relu", (v.name,), (Value(v.name, v.type),)),))


def test_registry_has_the_passes() -> None:
    for name in ("dce", "fold-constants", "cse", "fuse-elementwise"):
        assert name in PASSES and PASSES[name].__doc__


def test_parse_simple_list() -> None:
    ps = parse_pipeline("dce, fold-constants ,cse,fuse-elementwise")
    assert ps == [DeadCodeElimination(), FoldConstants(), CommonSubexpressionElimination(), FuseElementwise()]
    assert parse_pipeline("") == [] and parse_pipeline("   ") == []


def test_parse_options_converts_types() -> None:
    (p,) = parse_pipeline('test-knobs{depth=3, scale=2, flag=true, label="a,b}", limit=none}')
    assert p == _Knobs(depth=3, scale=2.0, flag=True, label="a,b}", limit=None)
    assert isinstance(p.scale, float)
    (p,) = parse_pipeline("test-knobs{limit=7,label=hello}")
    assert p == _Knobs(limit=7, label="hello")
    assert parse_pipeline("fold-constants{max-bytes=64}") == [FoldConstants(max_bytes=64)]


@pytest.mark.parametrize(
    "ps",
    [
        [DeadCodeElimination(), FoldConstants(max_bytes=10)],
        [_Knobs(depth=-2, scale=1e-3, flag=True, label="has space", limit=3), CommonSubexpressionElimination()],
        [_Knobs(label="true"), _Knobs(label='q"uote\\')],
        [],
    ],
)
def test_format_is_inverse_of_parse(ps: list[Pass]) -> None:
    assert parse_pipeline(format_pipeline(ps)) == ps


def test_format_leaves_out_defaults() -> None:
    assert format_pipeline([FoldConstants(), FuseElementwise(max_depth=1)]) == "fold-constants,fuse-elementwise{max_depth=1}"


def error(text: str) -> str:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    return str(info.value)


def test_unknown_pass_lists_valid_passes() -> None:
    msg = error("dce,cse2")
    assert msg.startswith("unknown pass 'cse2' at column 5; valid passes: bind-dims, cse, dce, derive, fold-batchnorm, fold-constants, "
                          "fuse-elementwise")


def test_unknown_option_lists_options_with_types() -> None:
    assert error("fold-constants{max=3}") == (
        "unknown option 'max' of fold-constants at column 16; options of fold-constants: max_bytes: int"
    )
    assert error("dce{x=1}") == "unknown option 'x' of dce at column 5; dce takes no options"


def test_bad_values() -> None:
    assert error("test-knobs{depth=x}") == "option 'depth' of test-knobs wants an int, got 'x'"
    assert error("test-knobs{flag=1}") == "option 'flag' of test-knobs wants a bool (true/false), got '1'"
    assert error("test-knobs{scale=fast}") == "option 'scale' of test-knobs wants a float, got 'fast'"
    assert error('test-knobs{depth="3"}') == "option 'depth' of test-knobs wants an int, got '3'"
    assert error("test-knobs{depth=1,depth=2}") == "option 'depth' of test-knobs given twice (column 20)"


@register_pass
@dataclass(frozen=True)
class _Picky(Pass):
    """Test-only pass whose option check does not name itself."""

    name: ClassVar[str] = "test-picky"
    odd: int = 1

    def __post_init__(self) -> None:
        if self.odd % 2 == 0:
            raise ValueError(f"odd must be odd, got {self.odd}")

    def apply(self, graph: Graph) -> Graph:
        return graph


def test_option_values_are_checked_by_the_pass() -> None:
    assert error("fuse-elementwise{max_depth=-3}") == "option 'max_depth' of fuse-elementwise must be >= 1, got -3"
    assert error("dce,fuse-elementwise{max-ops=0}") == "option 'max_ops' of fuse-elementwise must be >= 1, got 0"
    assert error("fold-constants{max_bytes=-1}") == "option 'max_bytes' of fold-constants must be >= 0, got -1"
    # A message that does not name the pass gets its name in front.
    assert error("test-picky{odd=2}") == "test-picky: odd must be odd, got 2"
    # The limits themselves are fine.
    assert parse_pipeline("fuse-elementwise{max_depth=1,max_ops=1},fold-constants{max_bytes=0}") == [
        FuseElementwise(max_depth=1, max_ops=1), FoldConstants(max_bytes=0)]
    with pytest.raises(ValueError):
        FuseElementwise(max_depth=0)  # the Python API checks too


def test_syntax_errors_give_the_column() -> None:
    assert error("dce,,cse") == "pipeline syntax error at column 5: expected a pass name, got ','"
    assert error("dce cse") == "pipeline syntax error at column 5: expected ',' between passes, got 'cse'"
    assert error("test-knobs{depth 3}") == "pipeline syntax error at column 18: expected '=', got '3'"
    assert error("test-knobs{depth=3") == "pipeline syntax error at column 19: expected ',' or '}', got the end"
    assert error("dce;") == "pipeline syntax error at column 4: unexpected character ';'"
    assert error('test-knobs{label="abc}') == "pipeline syntax error at column 18: unterminated string"
    assert error("dce,") == "pipeline syntax error at column 5: expected a pass name, got the end"


def test_register_pass_rejects_bad_passes() -> None:
    class NotFrozen(Pass):
        name: ClassVar[str] = "nf"

    with pytest.raises(TypeError):
        register_pass(NotFrozen)
    with pytest.raises(ValueError):
        register_pass(_Knobs)


G = """
graph g(%x: f32[4]) {
  %a: f32[4] = relu(%x)
  %b: f32[4] = relu(%x)
  %c: f32[4] = add(%a, %b)
  %dead: f32[4] = exp(%c)
  return %c
}
"""


def test_run_pipeline_reports_and_hooks() -> None:
    seen: list[tuple[str, int]] = []
    out, reports = run_pipeline(
        parse_graph(G),
        parse_pipeline("dce,cse,fuse-elementwise{recompute=true}"),
        on_pass=lambda p, g, r: seen.append((p.name, len(g.nodes))),
    )
    assert [(r.name, r.nodes_before, r.nodes_after) for r in reports] == [
        ("dce", 4, 3), ("cse", 3, 2), ("fuse-elementwise", 2, 1)]
    assert all(isinstance(r, PassReport) and r.seconds >= 0 for r in reports)
    assert seen == [("dce", 3), ("cse", 2), ("fuse-elementwise", 1)]
    assert len(out.nodes) == 1


def test_verify_names_the_breaking_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    g = parse_graph(G)
    with pytest.raises(VerifyError) as info:
        run_pipeline(g, parse_pipeline("dce,test-breaker,cse"))  # TENSOROPT_VERIFY=1 (conftest)
    assert str(info.value) == (
        "after pass 'test-breaker': %x is defined twice: as a graph input and as an output of relu node %x"
    )
    run_pipeline(g, parse_pipeline("test-breaker"), verify=False)  # explicitly off
    monkeypatch.setenv("TENSOROPT_VERIFY", "0")
    run_pipeline(g, parse_pipeline("test-breaker"))  # env off


def test_bad_input_is_not_blamed_on_a_pass() -> None:
    g = parse_graph(G)
    g = g.replace(outputs=("nope",))
    with pytest.raises(VerifyError, match="^pipeline input: graph output 0 %nope is not defined$"):
        run_pipeline(g, parse_pipeline("dce"), verify=True)


@pytest.mark.parametrize("text", ["dce,cse,fold-constants,fuse-elementwise", "fuse-elementwise{max_depth=1},cse,dce"])
def test_whole_pipeline_sound(any_graph, sound, text: str) -> None:
    out, _ = run_pipeline(any_graph, parse_pipeline(text))
    sound(any_graph, out)


def test_pass_options_lists_types() -> None:
    from tensoropt.passes import pass_options

    assert pass_options(FoldConstants) == {"max_bytes": "int"}
    assert pass_options(_Knobs) == {"depth": "int", "scale": "float", "flag": "bool", "label": "str",
                                    "limit": "int | none"}
    assert pass_options(DeadCodeElimination) == {}
