"""The PyTorch frontend: exported models agree with PyTorch eager.

Every model is converted, verified, run by the reference interpreter and
compared with the module itself (float32, rtol 1e-4 plus an absolute floor
scaled to the output).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch.export import Dim

from tensoropt import api
from tensoropt.errors import InputFileError, ShapeError, UnsupportedError
from tensoropt.frontends import torch as tfront
from tensoropt.interp import run_graph
from tensoropt.ir.graph import Graph
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.printer import print_graph


class Fn(torch.nn.Module):
    """A module around a one-argument function, for one-op models."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


class Fn2(Fn):
    """A module around a two-argument function."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Any:  # type: ignore[override]
        return self.fn(x, y)


def wrap(fn: Callable[..., Any] | torch.nn.Module) -> torch.nn.Module:
    if isinstance(fn, torch.nn.Module):
        return fn
    return Fn(fn) if fn.__code__.co_argcount == 1 else Fn2(fn)


def run(g: Graph, *xs: torch.Tensor) -> list[np.ndarray]:
    """Graph outputs on ``xs`` given in graph input order."""
    out = run_graph(g, {v.name: x.numpy() for v, x in zip(g.inputs, xs, strict=True)})
    return [out[o] for o in g.outputs]


def close(got: np.ndarray, ref: torch.Tensor) -> None:
    want = ref.detach().numpy()
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
        return
    floor = 1e-5 * float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=floor)


def check(module: torch.nn.Module, *xs: torch.Tensor, **kw: Any) -> Graph:
    """Convert ``module`` on ``xs``, verify, and match every output."""
    g = tfront.from_module(module, xs, **kw)
    api.verify(g)
    with torch.no_grad():
        ref = module(*xs)
    refs = torch.utils._pytree.tree_leaves(ref)
    for got, want in zip(run(g, *xs), refs, strict=True):
        close(got, want)
    return g


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -- small networks -------------------------------------------------------------------


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def test_mlp_matches_torch() -> None:
    g = check(mlp(), torch.randn(4, 6))
    assert {n.op for n in g.nodes} == {"gemm", "relu"}
    # the transposed weights were folded at import: no transpose node remains
    assert all(c.name.endswith(("weight.permute", "bias")) for c in g.constants)


def test_mlp_dynamic_batch_runs_at_two_sizes() -> None:
    m = mlp().eval()
    g = tfront.from_module(m, (torch.randn(3, 6),), dynamic_shapes=({0: Dim("batch")},))
    api.verify(g)
    assert g.inputs[0].type.shape == ("batch", 6)
    assert g.output_values[0].type.shape == ("batch", 3)
    for n in (2, 5):
        x = torch.randn(n, 6)
        close(run(g, x)[0], m(x))


class CNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(8, 6, 3, stride=2, bias=False)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn(self.conv1(x))))
        x = self.gap(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def cnn() -> CNN:
    m = CNN()
    assert m.bn.running_mean is not None and m.bn.running_var is not None
    with torch.no_grad():  # eval-mode statistics that are far from the identity
        m.bn.running_mean.uniform_(-1.0, 1.0)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.5, 0.5)
    return m.eval()


def test_cnn_conv_batchnorm_pool_linear() -> None:
    g = check(cnn(), torch.randn(2, 3, 16, 16))
    assert {"conv2d", "batchnorm", "maxpool2d"} <= {n.op for n in g.nodes}


def test_cnn_dynamic_batch() -> None:
    m = cnn()
    g = tfront.from_module(m, (torch.randn(2, 3, 16, 16),), dynamic_shapes={"x": {0: Dim("n")}})
    api.verify(g)
    x = torch.randn(3, 3, 16, 16)
    close(run(g, x)[0], m(x))


def test_from_module_exports_in_eval_mode_and_restores_training() -> None:
    m = cnn().train()
    g = tfront.from_module(m, (torch.randn(2, 3, 16, 16),))
    assert "batchnorm" in {n.op for n in g.nodes}  # running statistics, not batch ones
    assert m.training


# -- transformers (random weights from a small config; no download) -------------------------


def make_gpt2(attention: str) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=100,
                                  use_cache=False, bos_token_id=0, eos_token_id=0,
                                  attn_implementation=attention)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def gpt2() -> torch.nn.Module:
    return make_gpt2("eager")


@pytest.fixture(scope="module")
def gpt2_sdpa() -> torch.nn.Module:
    return make_gpt2("sdpa")


@pytest.fixture(scope="module")
def bert() -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=100, max_position_embeddings=64)
    return transformers.BertModel(cfg).eval()


def ids_and_mask(n: int, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 100, (1, n))
    mask = torch.ones(1, n, dtype=torch.long)
    if pad:
        mask[0, n - pad:] = 0
    return ids, mask


def test_gpt2_logits_match(gpt2: torch.nn.Module) -> None:
    ids, _ = ids_and_mask(16)
    g = tfront.from_module(gpt2, (ids,))
    api.verify(g)
    assert [v.name for v in g.inputs] == ["input_ids"]
    # the causal mask depends only on static shapes: folded into a constant
    assert "where" not in {n.op for n in g.nodes}
    with torch.no_grad():
        close(run(g, ids)[0], gpt2(ids).logits)


def test_bert_last_hidden_state_matches(bert: torch.nn.Module) -> None:
    ids, mask = ids_and_mask(16, pad=3)
    g = tfront.from_module(bert, (ids, mask))
    api.verify(g)
    assert [v.name for v in g.inputs] == ["input_ids", "attention_mask"]
    with torch.no_grad():
        ref = bert(ids, attention_mask=mask)
    hidden, pooled = run(g, ids, mask)
    close(hidden, ref.last_hidden_state)
    close(pooled, ref.pooler_output)


def test_gpt2_dynamic_sequence_length(gpt2_sdpa: torch.nn.Module) -> None:
    # With an explicit attention mask, transformers skips its packed-sequence
    # check, whose cat makes a seq + 1 sized tensor the IR cannot write.
    ids, mask = ids_and_mask(16)
    seq = Dim("seq", min=2, max=64)
    g = tfront.from_module(gpt2_sdpa, (ids,), example_kwargs={"attention_mask": mask},
                           dynamic_shapes={"input_ids": {1: seq}, "attention_mask": {1: seq}})
    api.verify(g)
    assert g.inputs[0].type.shape == (1, "seq")
    for n, pad in ((16, 0), (7, 2)):
        ids, mask = ids_and_mask(n, pad)
        with torch.no_grad():
            close(run(g, ids, mask)[0], gpt2_sdpa(ids, attention_mask=mask).logits)


def test_bert_dynamic_sequence_length(bert: torch.nn.Module) -> None:
    ids, mask = ids_and_mask(16)
    seq = Dim("seq", min=2, max=64)
    g = tfront.from_module(bert, (ids, mask),
                           dynamic_shapes={"input_ids": {1: seq}, "attention_mask": {1: seq}})
    api.verify(g)
    # arange(seq) and the index tensors built from it stay affine reads
    assert "gather" not in {n.op for n in g.nodes}
    for n, pad in ((16, 3), (5, 1)):
        ids, mask = ids_and_mask(n, pad)
        with torch.no_grad():
            close(run(g, ids, mask)[0], bert(ids, attention_mask=mask).last_hidden_state)


def test_gpt2_dynamic_without_mask_names_the_derived_size(gpt2: torch.nn.Module) -> None:
    ids, _ = ids_and_mask(16)
    with pytest.raises(UnsupportedError, match=r"derived symbolic size seq \+ 1"):
        tfront.from_module(gpt2, (ids,), dynamic_shapes={"input_ids": {1: Dim("seq", min=2, max=64)}})


# -- .pt2 files ----------------------------------------------------------------------------


def test_pt2_round_trip(tmp_path: Path) -> None:
    m = cnn()
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(m, (x,), dynamic_shapes={"x": {0: Dim("n")}}), path)
    g = tfront.load_pt2(path)
    api.verify(g)
    assert g.name == "cnn"
    close(run(g, x)[0], m(x))
    # the archive does not keep Dim names: torch's symbol names the dim
    assert isinstance(g.inputs[0].type.shape[0], str)


def test_pt2_bad_files_are_input_file_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(mlp(), (torch.randn(2, 6),)), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.pt2"
    text.write_text("not a model\n")
    other_zip = tmp_path / "other.pt2"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    for bad in (truncated, text, other_zip, tmp_path / "missing.pt2", tmp_path):
        with pytest.raises(InputFileError) as info:
            tfront.load_pt2(bad)
        msg = str(info.value)
        assert msg.startswith(str(bad)) and "\n" not in msg, msg


# -- errors ---------------------------------------------------------------------------------


def test_unsupported_op_names_op_node_and_source() -> None:
    with pytest.raises(UnsupportedError) as info:
        tfront.from_module(Fn(lambda x: torch.sort(x).values), (torch.randn(2, 5),))
    msg = str(info.value)
    assert "unsupported op aten.sort.default at node %sort" in msg
    assert "test_torch.py" in msg


def test_derived_dim_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match=r"node %cat .*derived symbolic size 2\*batch"):
        tfront.from_module(Fn(lambda x: torch.cat([x, x])), (torch.randn(3, 4),),
                           dynamic_shapes=({0: Dim("batch")},))


def test_non_tensor_output_and_bad_dtype_are_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="output 1 is the constant 3, not a tensor"):
        tfront.from_module(Fn(lambda x: (x + 1, 3)), (torch.randn(2),))
    with pytest.raises(UnsupportedError, match=r"input %x: dtype torch.bfloat16"):
        tfront.from_module(Fn(lambda x: x * 2), (torch.randn(2).bfloat16(),))


def test_nested_outputs_are_flattened_in_order() -> None:
    g = check(Fn(lambda x: ((x + 1, (x * 2,)), x - 1)), torch.randn(2, 3))
    assert len(g.outputs) == 3


def test_training_batchnorm_is_unsupported() -> None:
    ep = torch.export.export(torch.nn.BatchNorm1d(4).train(), (torch.randn(3, 4),), strict=False)
    with pytest.raises(UnsupportedError, match="training mode"):
        tfront.from_exported(ep)


def test_rule_mismatch_is_a_shape_error_naming_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    # A rule that builds the wrong thing is caught against torch's metadata.
    monkeypatch.setitem(tfront.RULES, "aten.relu.default",
                        lambda cx, a: cx.op("transpose", cx.tensor(a["self"])))
    with pytest.raises(ShapeError, match=r"^torch frontend: node %relu \(aten.relu.default, "
                                         r".*converted to f32\[3, 2\], but torch says f32\[2, 3\]"):
        tfront.from_module(Fn(torch.relu), (torch.randn(2, 3),))
    # ... and a registry rule rejecting the op gets the node's name in front
    monkeypatch.setitem(tfront.RULES, "aten.relu.default",
                        lambda cx, a: cx.op("matmul", cx.tensor(a["self"]), cx.tensor(a["self"])))
    with pytest.raises(ShapeError, match=r"^torch frontend: node %relu .*inner dim"):
        tfront.from_module(Fn(torch.relu), (torch.randn(2, 3),))


# -- symbolic dims ----------------------------------------------------------------------------


def test_dim_names_by_input_and_axis() -> None:
    ep = torch.export.export(mlp(), (torch.randn(3, 6),), dynamic_shapes=({0: Dim("b")},))
    assert isinstance(tfront.from_exported(ep).inputs[0].type.shape[0], str)
    g = tfront.from_exported(ep, dim_names={"input": {0: "rows"}})
    assert g.inputs[0].type.shape == ("rows", 6)


def test_shared_dim_across_inputs() -> None:
    seq = Dim("seq")
    g = check(Fn2(lambda a, b: a * b.sum(-1, keepdim=True)), torch.randn(4, 3), torch.randn(4, 2),
              dynamic_shapes=({0: seq}, {0: seq}))
    assert g.inputs[0].type.shape[0] == g.inputs[1].type.shape[0] == "seq"


def test_arange_over_symbolic_length_is_affine() -> None:
    # positions = arange(seq): an expr node over the symbolic dim, no constant
    m = Fn(lambda x: x + torch.arange(x.shape[1]).to(x.dtype) * 2)
    g = tfront.from_module(m, (torch.randn(2, 7),), dynamic_shapes=({1: Dim("seq")},))
    api.verify(g)
    assert "expr" in {n.op for n in g.nodes}
    x = torch.randn(2, 9)
    close(run(g, x)[0], m(x))


def test_symbolic_sizes_used_as_values() -> None:
    m = Fn2(lambda x, y: (x / x.shape[1], x * (x.shape[0] * y.shape[0] + 1), torch.arange(x.shape[1]) < y.shape[0]))
    g = tfront.from_module(m, (torch.randn(2, 7), torch.randn(3)),
                           dynamic_shapes=({0: Dim("b"), 1: Dim("n")}, {0: Dim("k")}))
    api.verify(g)
    for shapes in (((2, 7), (3,)), ((4, 3), (5,))):
        xs = [torch.randn(s) for s in shapes]
        for got, want in zip(run(g, *xs), m(*xs), strict=True):
            close(got, want)


_SYMBOLIC: dict[str, Callable[[torch.Tensor], Any]] = {
    "tensor_of_size": lambda x: x * torch.tensor(x.shape[0]),
    "new_full_of_size": lambda x: x + x.new_full((x.shape[0], 1), x.shape[0]),
    "full_ones_zeros": lambda x: (x + torch.full((x.shape[0], 3), 0.5), torch.ones(x.shape[0], 3, dtype=torch.long),
                                  torch.zeros_like(x) + 1),
    "head_rows": lambda x: (x[:2], x[1], x[1:3, ::2]),
    "float_arange": lambda x: x + torch.arange(x.shape[0], dtype=torch.float32)[:, None],
}


@pytest.mark.parametrize("case", sorted(_SYMBOLIC))
def test_symbolic_creation_and_slicing(case: str) -> None:
    m = Fn(_SYMBOLIC[case])
    g = tfront.from_module(m, (torch.randn(4, 3),), dynamic_shapes=({0: Dim("n", min=3, max=32)},))
    api.verify(g)
    for n in (4, 7):
        x = torch.randn(n, 3)
        for got, want in zip(run(g, x), torch.utils._pytree.tree_leaves(m(x)), strict=True):
            close(got, want)


def test_select_from_the_end_of_a_symbolic_axis_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="selecting from the end of a symbolic axis"):
        tfront.from_module(Fn(lambda x: x[-1]), (torch.randn(4, 3),), dynamic_shapes=({0: Dim("n")},))


# -- constant folding --------------------------------------------------------------------------


def test_static_masks_fold_to_constants() -> None:
    def masked(x: torch.Tensor) -> torch.Tensor:
        causal = torch.triu(torch.full((5, 5), float("-inf")), diagonal=1)
        keep = torch.arange(5) < 4
        return torch.softmax(x + causal, -1) * keep

    g = check(Fn(masked), torch.randn(2, 5, 5))
    assert sorted(n.op for n in g.nodes) == ["add", "mul", "softmax"]


def test_parameters_only_used_by_folding_are_dropped() -> None:
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ (self.w * 2).t()

    g = check(M(), torch.randn(2, 4))
    assert [c.name for c in g.constants] == ["w.mul.permute"]


# -- per-op coverage -------------------------------------------------------------------------

_f = torch.randn
with torch.random.fork_rng():
    torch.manual_seed(1)  # the inputs and the conv weights below, whatever ran before
    _OPS: dict[str, tuple[Callable[..., Any], tuple[torch.Tensor, ...]]] = {
        "unary": (lambda x: torch.sigmoid(x) + torch.tanh(x) - torch.exp(-x.abs()) + torch.erf(x), (_f(3, 4),)),
        "sqrt_log_rsqrt": (lambda x: torch.sqrt(x) + torch.log(x) * torch.rsqrt(x) + 1 / x, (_f(3, 4).abs() + 0.5,)),
        "expr_unary": (lambda x: torch.sin(x) + torch.cos(x) * torch.floor(x) - torch.ceil(x) + torch.sign(x)
                       + torch.trunc(x * 3), (_f(3, 4) * 3,)),
        "log1p_expm1": (lambda x: torch.log1p(x.abs()) + torch.expm1(x) + torch.log2(x.abs() + 1), (_f(3, 4),)),
        "activations": (lambda x: torch.nn.functional.gelu(x, approximate="tanh") + torch.nn.functional.gelu(x)
                        + torch.nn.functional.leaky_relu(x, 0.2) + torch.nn.functional.relu6(x * 4)
                        + torch.nn.functional.silu(x) + torch.nn.functional.elu(x), (_f(3, 4),)),
        "clamp": (lambda x, lo: x.clamp(-0.5, 0.7) + x.clamp(min=lo) + x.clamp(max=0.1), (_f(3, 4), _f(4))),
        "int_float_promotion": (lambda i, x: (i + x, i * 2, i / 3, i // 2, i % 3, x.fmod(0.3), x.remainder(0.3)),
                                (torch.randint(-9, 9, (3, 4)), _f(3, 4))),
        "pow": (lambda x: x ** 2 + x.abs() ** 0.5 + 2 ** x, (_f(3, 4),)),
        "compare_logic": (lambda x, y: ((x < y) | (x >= 0.5), (x != y) & ~(x == 0), torch.where(x > y, x, 0.5),
                                        x <= y, torch.logical_xor(x > 0, y > 0), (x > 0) ^ (y > 0)),
                          (_f(3, 4), _f(3, 4))),
        "reductions": (lambda x: (x.sum(), x.mean(-1), x.amax((0, 2), keepdim=True), x.amin(1),
                                  x.var(1), x.std(-1, keepdim=True), x.prod(2), x.max(1).values,
                                  (x > 0).any(1), (x > -5).all(), x.sum(1, dtype=torch.float64)),
                       (_f(2, 3, 4),)),
        "softmaxes": (lambda x: (torch.softmax(x, 1), torch.log_softmax(x, -1)), (_f(2, 3, 4),)),
        "norms": (lambda x: (torch.nn.functional.layer_norm(x, (4,)), torch.nn.functional.group_norm(x, 2),
                             torch.nn.functional.group_norm(x, 3, torch.ones(6) * 2, torch.ones(6))),
                  (_f(2, 6, 4),)),
        "movement": (lambda x: (x.view(4, 6).t(), x.permute(2, 0, 1), x[:, 1:3, ::2], x[..., -1], x[1],
                                x.unsqueeze(1).squeeze(1), x.flatten(), x.reshape(2, -1).expand(3, 2, 12),
                                torch.cat([x, x * 2], 1), *torch.split(x, [1, 2], 1), *x.chunk(2, -1)),
                     (_f(2, 3, 4),)),
        "pad_repeat_flip": (lambda x: (torch.nn.functional.pad(x, (1, 2, 0, 1), value=0.5),
                                       torch.nn.functional.pad(x, (1, 1, 2, 0), mode="reflect"),
                                       torch.nn.functional.pad(x, (2, 1, 1, 1), mode="replicate"),
                                       torch.nn.functional.pad(x, (-1, 1)),
                                       x.repeat(2, 1, 3), x.flip(1, 2)), (_f(1, 3, 4),)),
        "indexing": (lambda x, i: (x[i], x[:, i], x.index_select(1, i), torch.nn.functional.embedding(i, x),
                                   x[torch.arange(-3, 0)], x[:, torch.arange(-1, 2)], x[torch.tensor([-1, 0, 2])],
                                   x[torch.arange(3)[:, None], torch.arange(4) + 1], x[1:4:2, torch.arange(2)]),
                     (_f(5, 5), torch.tensor([4, 0, 2]))),
        "conv1d": (torch.nn.Conv1d(3, 4, 3, padding=1, stride=2), (_f(2, 3, 9),)),
        "grouped_dilated_conv": (torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (_f(1, 4, 7, 7),)),
        "pools": (lambda x: (torch.nn.functional.max_pool2d(x, 3, 2, padding=1, ceil_mode=True),
                             torch.nn.functional.max_pool2d(x, 2, dilation=2),
                             torch.nn.functional.avg_pool2d(x, 3, 2, padding=1),
                             torch.nn.functional.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False,
                                                            ceil_mode=True),
                             torch.nn.functional.adaptive_avg_pool2d(x, 2)), (_f(1, 2, 8, 8),)),
        "upsample": (lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"), (_f(1, 2, 3, 4),)),
        "matmuls": (lambda a, b: (a @ b, torch.bmm(a, b), torch.baddbmm(a @ b, a, b, beta=0.5, alpha=2.0),
                                  torch.addmm(b[0, 0], a[0], b[0], alpha=0.5), torch.einsum("bij,bjk->bik", a, b)),
                    (_f(2, 3, 4), _f(2, 4, 5))),
        "bool_and_int_inputs": (lambda m, i: (m.long() + i, torch.where(m, i, -i), (i * 3).clamp(0, 10)),
                                (torch.rand(3, 4) > 0.5, torch.randint(-5, 5, (3, 4)))),
        "trig_round": (lambda x: (torch.tan(x), torch.asin(x / 4), torch.atan(x), torch.sinh(x), torch.cosh(x),
                                  torch.acos(x / 4), torch.asinh(x), torch.acosh(x.abs() + 1),
                                  torch.atanh(x / 4), torch.round(x * 3)), (_f(3, 4),)),
        "cumsum_argmax": (lambda x: (x.cumsum(1), (x > 0).cumsum(0), x.argmax(1), x.argmin(), x.argmax(keepdim=True),
                                     *x.max(1), *x.min(0, keepdim=True)), (_f(3, 4),)),
        "gather_elements": (lambda x, i: torch.gather(x, 1, i), (_f(3, 4), torch.randint(0, 4, (3, 2)))),
        "conv_transpose2d": (torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
                             (_f(1, 4, 5, 5),)),
        "conv3d_pool3d": (torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.MaxPool3d(2)),
                          (_f(1, 2, 4, 6, 6),)),
        "bitwise_ints": (lambda i, j: (i & j, i | j, i ^ j),
                         (torch.randint(-8, 8, (3, 4)), torch.randint(-8, 8, (3, 4)))),
    }


@pytest.mark.parametrize("case", sorted(_OPS))
def test_op_matches_torch(case: str) -> None:
    fn, xs = _OPS[case]
    check(wrap(fn).eval(), *xs)


@pytest.mark.parametrize("kw", [{"stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
                                {"stride": 3, "padding": 1, "output_padding": 2, "dilation": 2, "bias": False},
                                {"padding": 2, "groups": 4}])
def test_conv_transpose1d_runs_on_conv_transpose2d(kw: dict[str, Any]) -> None:
    # torch.nn.ConvTranspose1d: no 1-D registry op, so the 2-D one over a unit height
    g = check(torch.nn.ConvTranspose1d(4, 8, 3, **kw).eval(), torch.randn(2, 4, 7))
    assert [n.op for n in g.nodes] == ["unsqueeze", "unsqueeze", "conv_transpose2d", "squeeze"]


def test_rules_name_real_aten_ops() -> None:
    for key in tfront.RULES:
        if key == "getitem":
            continue
        parts = key.split(".")
        assert parts[0] == "aten", key
        packet = getattr(torch.ops.aten, parts[1])
        if len(parts) == 3:
            assert parts[2] in packet.overloads(), key


def test_graph_text_round_trips() -> None:
    m = Fn(lambda x: x + torch.arange(x.shape[1]))
    g = tfront.from_module(m, (torch.randn(2, 7),), dynamic_shapes=({1: Dim("seq")},))
    assert parse_graph(print_graph(g)) == g


class _Evil:
    """Unpickling this would call os.system: the pt2 loader must refuse it."""

    def __reduce__(self):  # noqa: D105
        import os

        return (os.system, ("true",))


def test_pt2_loading_refuses_arbitrary_pickles() -> None:
    import io
    import pickle

    from tensoropt.frontends.torch import _no_pickles, _PickleRefused

    data = pickle.dumps(_Evil())
    with _no_pickles():
        with pytest.raises(_PickleRefused):
            torch.load(io.BytesIO(data))
        from torch.export.pt2_archive import _package

        with pytest.raises(_PickleRefused):
            _package.pickle.loads(data)
        # plain tensors still load
        buf = io.BytesIO()
        torch.save(torch.arange(3), buf)
        buf.seek(0)
        assert torch.load(buf).tolist() == [0, 1, 2]
    assert torch.load is not None and pickle.loads is not None
