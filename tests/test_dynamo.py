"""``torch.compile(model, backend="tensoropt")`` against eager PyTorch.

Compiled graphs match eager; graph breaks give several graphs; unsupported
ops, training and dynamic shapes fall back to eager, counted and warned,
never raised.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from torch import nn

from tensoropt import dynamo

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    torch._dynamo.reset()
    dynamo.reset_stats()
    torch.manual_seed(0)
    yield
    torch._dynamo.reset()


def _close(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    if isinstance(got, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _close(g, w)
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=RTOL, atol=ATOL)


def _run(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """(compiled, eager) results under no_grad, no fallback warning allowed."""
    compiled = torch.compile(model, backend=dynamo.backend)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", dynamo.DynamoFallbackWarning)
        got = compiled(*args, **kwargs)
        want = model(*args, **kwargs)
    return got, want


def test_mlp_compiles_and_matches_eager() -> None:
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    got, want = _run(m, torch.randn(8, 16))
    _close(got, want)
    s = dynamo.stats()
    assert (s.graphs, s.compiled, s.fallbacks) == (1, 1, [])


def test_cnn_compiles_and_matches_eager() -> None:
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    with torch.no_grad():  # non-trivial running statistics
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    m.eval()
    got, want = _run(m, torch.randn(2, 3, 16, 16))
    _close(got, want)
    s = dynamo.stats()
    assert (s.graphs, s.compiled, s.fallbacks) == (1, 1, [])


def test_output_structure_dtypes_and_aliases_of_inputs() -> None:
    class Many(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return x, (x * y).sum(-1), y.view(-1), x.argmax(-1), x > y, x.double() * 2

    x, y = torch.randn(3, 4), torch.randn(3, 4)
    got, want = _run(Many(), x, y)
    _close(got, want)  # int64, bool and float64 outputs keep their dtypes
    # dynamo returns an input passed straight through itself (not a graph
    # output); a view of an input (y.view) comes back as a copy, equal in value
    assert got[0] is x
    assert dynamo.stats().compiled == 1


def test_graph_of_weights_only_returns_torch_tensors() -> None:
    class OnlyWeights(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w * 2 + 1

    got, want = _run(OnlyWeights().eval(), torch.randn(2))
    _close(got, want)
    assert dynamo.stats().compiled == 1


def test_gpt2_logits_match_eager() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=64,
                                  use_cache=False, bos_token_id=0, eos_token_id=0,
                                  attn_implementation="eager")
    m = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 256, (1, 16))
    got, want = _run(m, ids)
    _close(got.logits, want.logits)
    s = dynamo.stats()
    assert s.compiled >= 1 and s.fallbacks == [], s


def test_bert_matches_eager() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, vocab_size=256, max_position_embeddings=64)
    # the default attention (sdpa) here; GPT-2 above uses the eager one
    m = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 256, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.long)
    mask[0, 12:] = 0
    got, want = _run(m, ids, attention_mask=mask)
    _close(got.last_hidden_state, want.last_hidden_state)
    _close(got.pooler_output, want.pooler_output)
    s = dynamo.stats()
    assert s.compiled >= 1 and s.fallbacks == [], s


def test_graph_break_gives_two_compiled_graphs() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            torch._dynamo.graph_break()
            return self.b(h)

    got, want = _run(Broken().eval(), torch.randn(2, 8))
    _close(got, want)
    s = dynamo.stats()
    assert (s.graphs, s.compiled, s.fallbacks) == (2, 2, [])


class _Sorted(nn.Module):
    """``aten.sort`` has no rule in the torch frontend."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(self.fc(x), dim=-1).values * 2


def test_unsupported_op_falls_back_with_a_warning() -> None:
    m = _Sorted().eval()
    x = torch.randn(4, 6)
    compiled = torch.compile(m, backend=dynamo.backend)
    with torch.no_grad():
        with pytest.warns(dynamo.DynamoFallbackWarning, match="aten.sort"):
            got = compiled(x)
        _close(got, m(x))
        _close(compiled(x), m(x))  # later calls: eager again, no new compile
    s = dynamo.stats()
    assert s.graphs == 1 and s.compiled == 0 and len(s.fallbacks) == 1
    assert "aten.sort" in s.fallbacks[0] and "\n" not in s.fallbacks[0]


def test_training_falls_back_and_backward_works() -> None:
    m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 1)).train()
    ref = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 1))
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 5)
    compiled = torch.compile(m, backend=dynamo.backend)
    with pytest.warns(dynamo.DynamoFallbackWarning, match="requires grad"):
        loss = compiled(x).sum()
    loss.backward()
    ref(x).sum().backward()
    for p, q in zip(m.parameters(), ref.parameters()):
        assert p.grad is not None
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=RTOL, atol=ATOL)
    s = dynamo.stats()
    assert s.compiled == 0 and len(s.fallbacks) == 1 and "training" in s.fallbacks[0]


def test_new_shape_recompiles_and_dynamic_graph_falls_back() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    compiled = torch.compile(m, backend=dynamo.backend)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", dynamo.DynamoFallbackWarning)
        for n in (2, 3, 5):  # the second shape makes dynamo mark the batch dim dynamic
            x = torch.randn(n, 4)
            _close(compiled(x), m(x))
    s = dynamo.stats()
    assert s.compiled == 1 and s.graphs == 2
    assert len(s.fallbacks) == 1 and "dynamic shapes" in s.fallbacks[0]


def test_static_compile_per_shape() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    compiled = torch.compile(m, backend=dynamo.backend, dynamic=False)
    with torch.no_grad():
        for n in (2, 3, 2):
            x = torch.randn(n, 4)
            _close(compiled(x), m(x))
    s = dynamo.stats()
    assert (s.graphs, s.compiled, s.fallbacks) == (2, 2, [])


def test_changed_weights_are_not_stale() -> None:
    m = nn.Sequential(nn.Linear(4, 4)).eval()
    compiled = torch.compile(m, backend=dynamo.backend)
    x = torch.randn(2, 4)
    with torch.no_grad():
        _close(compiled(x), m(x))
        m[0].weight.mul_(3)
        with pytest.warns(dynamo.DynamoFallbackWarning, match="stale"):
            got = compiled(x)
        _close(got, m(x))
    assert dynamo.stats().compiled == 1 and len(dynamo.stats().fallbacks) == 1


def test_backend_by_name() -> None:
    from torch._dynamo.backends.registry import list_backends, lookup_backend

    assert "tensoropt" in list_backends()
    assert lookup_backend("tensoropt") is dynamo.backend
    m = nn.Sequential(nn.Linear(3, 2)).eval()
    compiled = torch.compile(m, backend="tensoropt")
    x = torch.randn(2, 3)
    with torch.no_grad():
        _close(compiled(x), m(x))
    assert dynamo.stats().compiled == 1
