"""Real models through codegen: compiled outputs match onnxruntime and PyTorch.

- every ONNX light CNN of the onnx wheel, with seeded random weights, on the
  logits (the shipped constant weights make every logit equal): 1e-4 relative
  to onnxruntime. SqueezeNet runs by default; the others (hundreds of MB of
  weights, minutes of compile time together) are ``slow``;
- GPT-2 and BERT built from transformers configs (random weights), static
  and with a dynamic sequence length compiled once and run at two lengths,
  against PyTorch eager; torch tensors in give torch tensors out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "frontends"))
from onnx_models import LIGHT, input_of, light_path, with_random_weights  # noqa: E402

import tensoropt  # noqa: E402

FAST_LIGHT = ("squeezenet",)


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def _check_light(name: str) -> None:
    import onnx
    import onnxruntime as ort

    model = with_random_weights(onnx.load(light_path(name)))
    feeds = input_of(model)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    compiled = tensoropt.compile(model)
    got = compiled(**feeds)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert _rel(g, w) < 1e-4, (name, _rel(g, w))


@pytest.mark.parametrize("name", FAST_LIGHT)
def test_light_model_matches_onnxruntime(name: str) -> None:
    _check_light(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LIGHT if n not in FAST_LIGHT])
def test_light_model_matches_onnxruntime_slow(name: str) -> None:
    _check_light(name)


def _gpt2(attention: str = "eager"):  # type: ignore[no-untyped-def]
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=100,
                                  use_cache=False, bos_token_id=0, eos_token_id=0, attn_implementation=attention)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _close(got, want, tol: float = 1e-4) -> None:  # type: ignore[no-untyped-def]
    got = got.numpy() if hasattr(got, "numpy") else got
    assert _rel(np.asarray(got), want.detach().numpy()) < tol


def test_gpt2_matches_pytorch_torch_tensors_in_and_out() -> None:
    import torch

    m = _gpt2()
    ids = torch.randint(0, 100, (1, 16))
    compiled = tensoropt.compile(m, example_inputs=(ids,))
    out = compiled(ids)
    assert isinstance(out, torch.Tensor)
    with torch.no_grad():
        _close(out, m(ids).logits)


def test_bert_matches_pytorch_at_two_lengths_one_compile() -> None:
    import torch
    import transformers
    from torch.export import Dim

    from tensoropt.frontends.torch import from_module

    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=100, max_position_embeddings=64)
    bert = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.long)
    seq = Dim("seq", min=2, max=64)
    g = from_module(bert, (ids, mask), dynamic_shapes={"input_ids": {1: seq}, "attention_mask": {1: seq}})
    compiled = tensoropt.compile(g)
    assert compiled.inputs[0].type.shape == (1, "seq")
    for n, pad in ((16, 3), (5, 1)):
        ids = torch.randint(0, 100, (1, n))
        mask = torch.ones(1, n, dtype=torch.long)
        mask[0, n - pad:] = 0
        hidden, pooled = compiled(ids, mask)
        with torch.no_grad():
            ref = bert(ids, attention_mask=mask)
        _close(hidden, ref.last_hidden_state)
        _close(pooled, ref.pooler_output)


@pytest.mark.slow
def test_gpt2_benchmark_config_matches_pytorch() -> None:
    """The README's GPT-2 config (2 layers, n_embd 256, seq 64)."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=256, n_head=4, n_positions=128, use_cache=False)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 64))
    compiled = tensoropt.compile(m, example_inputs=(ids,))
    with torch.no_grad():
        _close(compiled(ids), m(ids).logits)
