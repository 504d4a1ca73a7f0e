"""The ONNX models that ship in the onnx wheel, and a way to give them real weights.

The light models compute every weight with ``ConstantOfShape`` (one value per
tensor), so every logit is equal and the softmax output is 0.001 everywhere,
whatever the implementation. :func:`with_random_weights` swaps those weights for
seeded random ones (He-scaled; batchnorm variances positive) and cuts the final
Softmax, so outputs are logits that differ and a wrong kernel shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
LIGHT = sorted(p.stem.removeprefix("light_") for p in (DATA / "light").glob("*.onnx"))


def light_path(name: str) -> Path:
    return DATA / "light" / f"light_{name}.onnx"


def _const_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    vals = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return vals


def _random_weight(rng: np.random.Generator, shape: tuple[int, ...], role: str) -> np.ndarray:
    if role == "weight":  # He: std = sqrt(2 / fan_in)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if role == "var":
        return rng.uniform(0.5, 1.5, shape)
    if role in ("scale", "mul"):
        return 1.0 + 0.1 * rng.standard_normal(shape)
    return 0.1 * rng.standard_normal(shape)  # biases, means, additive terms


def _roles(model: onnx.ModelProto) -> dict[str, str]:
    roles: dict[str, str] = {}
    for n in model.graph.node:
        ins = list(n.input)
        if n.op_type in ("Conv", "ConvTranspose"):
            roles[ins[1]] = "weight"
        elif n.op_type == "Gemm":
            roles[ins[1]] = "gemm_t" if any(a.name == "transB" and a.i for a in n.attribute) else "gemm"
        elif n.op_type == "BatchNormalization":
            for name, role in zip(ins[1:], ("scale", "bias", "mean", "var")):
                roles[name] = role
        elif n.op_type == "Mul":
            for name in ins:
                roles.setdefault(name, "mul")
    return roles


def with_random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy whose ConstantOfShape weights are seeded random initializers, cut
    before its final Softmax (the output is then the logits)."""
    rng = np.random.default_rng(seed)
    consts = _const_values(model)
    roles = _roles(model)
    g = model.graph
    keep, inits = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape":
            keep.append(n)
            continue
        shape = tuple(int(d) for d in consts[n.input[0]].reshape(-1))
        role = roles.get(n.output[0], "bias")
        if role == "gemm":  # [in, out]: fan in is dim 0
            w = rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])
        else:
            w = _random_weight(rng, shape, "weight" if role == "gemm_t" else role)
        inits.append(numpy_helper.from_array(w.astype(np.float32), n.output[0]))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    out.graph.initializer.extend(inits)
    if out.ir_version < 4:  # IR 3 lists every initializer as a graph input too
        out.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits)
    last = keep[-1]
    if last.op_type == "Softmax" and last.output[0] == g.output[0].name:
        out.graph.node.pop()
        del out.graph.output[:]
        out.graph.output.append(_value_info(model, last.input[0]))
    # the shape vectors of the removed ConstantOfShape nodes are unused now
    used = {i for n in out.graph.node for i in n.input}
    dead = {t.name for t in out.graph.initializer if t.name not in used and t.name.endswith("__SHAPE")}
    kept_inits = [t for t in out.graph.initializer if t.name not in dead]
    kept_inputs = [v for v in out.graph.input if v.name not in dead]
    del out.graph.initializer[:], out.graph.input[:]
    out.graph.initializer.extend(kept_inits)
    out.graph.input.extend(kept_inputs)
    return out


def _value_info(model: onnx.ModelProto, name: str) -> onnx.ValueInfoProto:
    inferred = onnx.shape_inference.infer_shapes(model)
    for v in inferred.graph.value_info:
        if v.name == name:
            return v
    raise KeyError(name)


def input_of(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Seeded random values for the model's run-time inputs."""
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in model.graph.input:
        if v.name in inits:
            continue
        shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
        feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds
