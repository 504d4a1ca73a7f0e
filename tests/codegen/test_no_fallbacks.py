"""Real models compile with every kernel scheduled by the rule meant for it.

The light CNNs of the onnx wheel, GPT-2 and BERT from ``transformers``
configs (static and with a dynamic sequence length), and the derive
benchmark's PyTorch models (DCGAN, InfoGAN and FSRCNN generators, with their
ConvTranspose layers): none may leave a kernel unscheduled or record any
fallback (``manifest["fallbacks"]``, see ``codegen/schedule.py``). The
small ones run in the default suite; the rest, and the symbolic-batch light
models, under ``-m slow``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import onnx
import pytest

import tensoropt

ROOT = Path(__file__).resolve().parents[2]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
FAST_LIGHT = ("squeezenet", "shufflenet")
SLOW_LIGHT = ("resnet50", "densenet121", "inception_v1", "inception_v2", "bvlc_alexnet", "zfnet512", "vgg19")


def _check(model: Any, **kw: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the records are asserted on below, one by one
        compiled = tensoropt.compile(model, **kw)
    kernels = compiled.manifest["kernels"]
    assert not [k for k, rule in kernels.items() if rule.startswith("none")], kernels
    assert compiled.manifest["fallbacks"] == [], compiled.manifest["fallbacks"]


def _light(name: str, symbolic: bool = False) -> Any:
    model = onnx.load(LIGHT / f"light_{name}.onnx")
    if symbolic:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from symbolic_speed import symbolic_batch_onnx

        model = symbolic_batch_onnx(model)
    return model


@pytest.mark.parametrize("name", FAST_LIGHT)
def test_light_model(name: str) -> None:
    _check(_light(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_LIGHT)
def test_light_model_slow(name: str) -> None:
    _check(_light(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST_LIGHT + SLOW_LIGHT)
def test_light_model_with_a_symbolic_batch(name: str) -> None:
    _check(_light(name, symbolic=True))


@pytest.mark.parametrize("which", ["gpt2", "bert"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic-seq"])
def test_transformer(which: str, dynamic: bool) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from symbolic_speed import _torch_case

    symbolic, twin, _ = _torch_case(which)
    _check(symbolic if dynamic else twin(16))


@pytest.mark.parametrize("which", ["dcgan", "infogan", "fsrcnn"])
def test_derive_benchmark_model(which: str) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import derive_models

    module, args = {"dcgan": derive_models._dcgan, "infogan": derive_models._infogan,
                    "fsrcnn": derive_models._fsrcnn}[which]()
    _check(module, example_inputs=args)
