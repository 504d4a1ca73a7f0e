"""The models shipped in the onnx wheel, imported and run against their references.

Light models: the shipped output (a uniform softmax, see onnx_models.py) and,
more to the point, logits with seeded random weights against onnxruntime.
pytorch-converted / pytorch-operator / simple: every case matches its shipped
outputs, except the ones listed in UNSUPPORTED, which must fail with a clear
UnsupportedError (so a case that starts passing shows up here too).
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tensoropt import api
from tensoropt import backend
from tensoropt.errors import UnsupportedError
from tensoropt.frontends.onnx import from_onnx, load_onnx
from tensoropt.interp import run_graph

from onnx_models import DATA, LIGHT, input_of, light_path, with_random_weights

#: light models whose random-weight run takes seconds (hundreds of MB of weights).
HEAVY = {"vgg19", "bvlc_alexnet", "zfnet512"}


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _close(out: np.ndarray, ref: np.ndarray, rtol: float = 1e-4) -> None:
    """Within ``rtol`` relative, elementwise or against the largest magnitude."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * float(np.abs(ref).max()))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in LIGHT])
def test_light_model_imports_verifies_and_runs(name: str) -> None:
    """A smoke test: the shipped output is a uniform softmax that any
    implementation matches (the random-weight test below is the real check)."""
    g = load_onnx(light_path(name))
    api.verify(g)
    # every weight came from ConstantOfShape: folded into constants, no such node left
    assert g.constants and not any("ConstantOfShape" in n.op for n in g.nodes)
    feeds = {g.inputs[0].name: np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    ref = numpy_helper.to_array(onnx.load_tensor(str(light_path(name)).replace(".onnx", "_output_0.pb")))
    out = run_graph(g, feeds)[g.outputs[0]]
    _close(out.reshape(ref.shape), ref)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in LIGHT])
def test_light_model_random_weights_match_onnxruntime(name: str) -> None:
    model = with_random_weights(onnx.load(light_path(name)))
    feeds = input_of(model)
    ref = _ort(model, feeds)[0]
    assert float(ref.std()) > 1e-3 * float(np.abs(ref).max())  # the logits really differ
    g = from_onnx(model)
    api.verify(g)
    _close(run_graph(g, feeds)[g.outputs[0]], ref)


# -- the wheel's pytorch-converted / pytorch-operator / simple cases -----------------------

#: case -> why tensoropt refuses it (by design or not yet).
UNSUPPORTED: dict[str, str] = {
    "simple/test_gradient_of_add": "training op ai.onnx.preview.training.Gradient",
    "simple/test_gradient_of_add_and_mul": "training op ai.onnx.preview.training.Gradient",
    **{f"simple/test_sequence_model{k}": "sequence types are outside the tensor IR" for k in range(1, 9)},
    **{f"simple/test_strnorm_model_{s}": "string tensors are outside the tensor IR" for s in (
        "monday_casesensintive_lower", "monday_casesensintive_nochangecase", "monday_casesensintive_upper",
        "monday_empty_output", "monday_insensintive_upper_twodim", "nostopwords_nochangecase")},
}


def _wheel_cases() -> list[str]:
    return sorted(f"{sub}/{Path(d).name}" for sub in ("pytorch-converted", "pytorch-operator", "simple")
                  for d in glob.glob(str(DATA / sub / "*/")))


def _tensors(folder: Path, prefix: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda f: int(f.stem.split("_")[-1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(f))) for f in files]


@pytest.mark.parametrize("case", _wheel_cases())
def test_wheel_case_matches_shipped_outputs(case: str) -> None:
    folder = DATA / case
    model = onnx.load(str(folder / "model.onnx"))
    if case in UNSUPPORTED:
        with pytest.raises(UnsupportedError):
            backend.prepare(model).run(_tensors(next(folder.glob("test_data_set_*")), "input"))
        return
    rep = backend.prepare(model)
    for ds in sorted(folder.glob("test_data_set_*")):
        outs = rep.run(_tensors(ds, "input"))
        refs = _tensors(ds, "output")
        assert len(outs) == len(refs)
        for o, r in zip(outs, refs):
            np.testing.assert_allclose(o, r, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in LIGHT])
def test_light_model_onnx_ir_onnx_round_trip(name: str) -> None:
    """ONNX -> IR -> ONNX gives onnxruntime the same logits (random weights)."""
    from tensoropt.frontends.onnx_export import to_onnx

    model = with_random_weights(onnx.load(light_path(name)))
    feeds = input_of(model)
    ref = _ort(model, feeds)[0]
    g = from_onnx(model)
    back = to_onnx(g)
    out = _ort(back, {g.inputs[0].name: feeds[next(iter(feeds))]})[0]
    _close(out, ref)
