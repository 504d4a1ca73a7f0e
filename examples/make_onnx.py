"""Regenerate the bundled ONNX example (seeded, He-scaled weights): python examples/make_onnx.py

``small_cnn.onnx`` is a MobileNet-style block stack on 64x64 RGB images with a
symbolic batch: conv + batch norm + ReLU (stride 2), depthwise conv, pointwise
conv, max pool, conv, global average pool, Gemm and Softmax. Written with
onnx.helper and checked by onnx's checker; ``make demo`` compiles it.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(2026)
    w = {
        "c1_w": he(rng, (16, 3, 3, 3), 27), "c1_b": np.zeros(16, np.float32),
        "bn_scale": (1 + 0.1 * rng.standard_normal(16)).astype(np.float32),
        "bn_bias": (0.1 * rng.standard_normal(16)).astype(np.float32),
        "bn_mean": (0.1 * rng.standard_normal(16)).astype(np.float32),
        "bn_var": (0.5 + rng.random(16)).astype(np.float32),
        "dw_w": he(rng, (16, 1, 3, 3), 9), "dw_b": (0.1 * rng.standard_normal(16)).astype(np.float32),
        "pw_w": he(rng, (32, 16, 1, 1), 16), "pw_b": (0.1 * rng.standard_normal(32)).astype(np.float32),
        "c2_w": he(rng, (64, 32, 3, 3), 288), "c2_b": (0.1 * rng.standard_normal(64)).astype(np.float32),
        "fc_w": he(rng, (10, 64), 64), "fc_b": (0.1 * rng.standard_normal(10)).astype(np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1_w", "c1_b"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"]),
        n("Relu", ["bn"], ["r1"]),
        n("Conv", ["r1", "dw_w", "dw_b"], ["dw"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=16),
        n("Relu", ["dw"], ["r2"]),
        n("Conv", ["r2", "pw_w", "pw_b"], ["pw"], kernel_shape=[1, 1]),
        n("Relu", ["pw"], ["r3"]),
        n("MaxPool", ["r3"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["mp", "c2_w", "c2_b"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r4"]),
        n("GlobalAveragePool", ["r4"], ["gap"]),
        n("Flatten", ["gap"], ["flat"]),
        n("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        n("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10,
                              producer_name="tensoropt examples/make_onnx.py")
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    onnx.save(build(), HERE / "small_cnn.onnx")
