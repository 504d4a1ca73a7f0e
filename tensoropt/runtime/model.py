"""A compiled model as a Python callable, in memory or loaded from an artifact.

``model(x, y)`` (positional, in the model's input order) or
``model(x=..., y=...)`` (by input name) checks names, dtypes and shapes
(symbolic dims bind from the arrays, as the interpreter does), runs the Relax
VM and returns one array, or a tuple when the model has several outputs.
torch tensors in give torch tensors out. Weights are uploaded to the device
once, when the model is made.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import EvalError, InputFileError
from ..ir.graph import Value
from . import artifact as art


def _use_all_cores() -> None:
    """Give TVM's CPU thread pool every core this process may use.

    TVM's default halves the core count on x86 (it assumes hyper-threads), so
    on a 2-core machine compiled code would run on one thread while
    onnxruntime and PyTorch use two. ``TVM_NUM_THREADS``, when set, wins. The
    pool reads it when it starts (the first parallel kernel).
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    os.environ.setdefault("TVM_NUM_THREADS", str(n))


def _device(target: str) -> Any:
    import tvm

    if target == "cuda":
        dev = tvm.cuda(0)
        if not dev.exist:
            raise EvalError("this artifact was compiled for cuda, and no CUDA GPU is visible here")
        return dev
    return tvm.cpu(0)


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and type(x).__name__ == "Tensor"


class CompiledModel:
    """Callable compiled model. ``manifest`` is the artifact manifest (dict)."""

    def __init__(self, executable: Any, manifest: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
        import tvm
        from tvm import relax

        self._executable = executable
        self.manifest = dict(manifest)
        self.inputs: tuple[Value, ...] = tuple(art._value(d, "manifest inputs") for d in manifest["inputs"])
        self.outputs: tuple[Value, ...] = tuple(art._value(d, "manifest outputs") for d in manifest["outputs"])
        self.weight_names: tuple[str, ...] = tuple(manifest["weights"])
        self.name = str(manifest.get("name", "model"))
        self.target = str(manifest["target"]["name"])
        self._weights = {k: np.asarray(weights[k]) for k in self.weight_names}
        _use_all_cores()
        self.device = _device(self.target)
        self._vm = relax.VirtualMachine(executable, self.device)
        self._main = self._vm["main"]
        self._tvm_weights = [tvm.runtime.tensor(np.asarray(self._weights[k], order="C"), self.device)
                             for k in self.weight_names]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.outputs)

    def _named(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        names = self.input_names
        if len(args) > len(names):
            raise EvalError(f"{self.name} takes {len(names)} input(s) ({', '.join(names)}), got {len(args)} positional")
        out = dict(zip(names, args))
        for k, v in kwargs.items():
            if k in out:
                raise EvalError(f"input {k!r} given both positionally and by name")
            out[k] = v
        return out

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs by name for inputs by name (NumPy arrays)."""
        import tvm
        from ..interp import bind_inputs

        values, symbols = bind_inputs(self.inputs, {k: np.asarray(v) for k, v in inputs.items()}, self.name)
        args = [tvm.runtime.tensor(np.asarray(values[v.name], order="C"), self.device) for v in self.inputs]
        result = self._main(*args, *self._tvm_weights)
        outs = [result] if len(self.outputs) == 1 else list(result)
        arrays = {}
        for v, o in zip(self.outputs, outs):
            arr = o.numpy()
            arrays[v.name] = arr
        return arrays

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        named = self._named(args, kwargs)
        torch_in = any(_is_torch(v) for v in named.values())
        if torch_in:
            named = {k: (v.detach().cpu().numpy() if _is_torch(v) else v) for k, v in named.items()}
        out = self.run(named)
        vals = [out[v.name] for v in self.outputs]
        if torch_in:
            import torch

            vals = [torch.from_numpy(np.ascontiguousarray(v)) for v in vals]
        return vals[0] if len(vals) == 1 else tuple(vals)

    def time(self, inputs: Mapping[str, Any], number: int = 1, repeat: int = 10) -> list[float]:
        """Seconds per call of the compiled main only (TVM's timer; arrays already on the device)."""
        import tvm
        from ..interp import bind_inputs

        values, _ = bind_inputs(self.inputs, {k: np.asarray(v) for k, v in inputs.items()}, self.name)
        args = [tvm.runtime.tensor(np.asarray(values[v.name], order="C"), self.device) for v in self.inputs]
        timer = self._vm.time_evaluator("main", self.device, number=number, repeat=repeat)
        return list(timer(*args, *self._tvm_weights).results)

    def save(self, directory: str | Path) -> Path:
        """Write this model as an artifact directory (atomically); returns its path."""
        d = Path(directory)
        art.write_artifact(d, self.manifest, self._weights, lambda p: self._executable.export_library(str(p)))
        return d

    def __repr__(self) -> str:
        ins = ", ".join(f"{v.name}: {v.type}" for v in self.inputs)
        return f"<CompiledModel {self.name}({ins}) target={self.target}>"


def load_artifact(directory: str | Path) -> CompiledModel:
    """The :class:`CompiledModel` in ``directory``; one-line InputFileError when it is bad."""
    import tvm

    d = Path(directory)
    manifest = art.parse_manifest(d)
    art.check_files(d, manifest)
    weights = art.read_weights(d, manifest)
    try:
        lib = tvm.runtime.load_module(str(d / art.LIBRARY))
    except Exception as e:  # TVM raises its own error types; keep one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputFileError(f"{d / art.LIBRARY}: cannot load the compiled library: {first}") from None
    return CompiledModel(lib, manifest.raw, weights)


def versions() -> dict[str, str]:
    """Versions recorded in a manifest (what built this artifact)."""
    import tvm

    from .. import __version__

    try:
        from importlib.metadata import version

        ffi = version("apache-tvm-ffi")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        ffi = "unknown"
    return {"tensoropt": __version__, "tvm": str(tvm.__version__), "tvm_ffi": ffi,
            "python": sys.version.split()[0], "platform": platform.platform()}
