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
import shutil
import sys
import threading
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


def _to_numpy(x: Any) -> np.ndarray:
    """An input as a NumPy array (torch tensors: detached, from any device)."""
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _span(t: Any) -> tuple[int, int]:
    """The byte range ``[start, end)`` a device tensor occupies."""
    start = int(t.data_ptr())
    n = 1
    for d in t.shape:
        n *= int(d)
    return start, start + n * np.dtype(str(t.dtype)).itemsize


def _array_span(a: np.ndarray) -> tuple[int, int]:
    """The byte range of a C-contiguous array (a NumPy attribute read: the
    device tensor's shape and dtype cost 3 us per call through the FFI)."""
    start = a.__array_interface__["data"][0]
    return start, start + a.nbytes


def _overlaps_any(span: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    a, b = span
    return any(a < end and start < b for start, end in others)


class CompiledModel:
    """Callable compiled model. ``manifest`` is the artifact manifest (dict)."""

    def __init__(self, executable: Any, manifest: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                 library: Path | None = None) -> None:
        self._executable = executable
        self._library = library  # the model.so this was loaded from (saving copies it)
        # One Relax VM is not safe to call from several threads at once (it keeps
        # per-call registers): calls are serialized.
        self._lock = threading.Lock()
        self.manifest = dict(manifest)
        self.inputs: tuple[Value, ...] = tuple(art._value(d, "manifest inputs") for d in manifest["inputs"])
        self.outputs: tuple[Value, ...] = tuple(art._value(d, "manifest outputs") for d in manifest["outputs"])
        self.weight_names: tuple[str, ...] = tuple(manifest["weights"])
        self.name = str(manifest.get("name", "model"))
        self.target = str(manifest["target"]["name"])
        self._weights = {k: np.asarray(weights[k]) for k in self.weight_names}
        self._vm: Any = None  # made on first use: a CUDA model can be built and saved without a GPU
        # input name -> its device tensor, that tensor's byte span, and (CPU) a
        # NumPy view of it (see _input_buffer)
        # and the shape and dtype it was made for
        self._in_bufs: dict[str, tuple[Any, tuple[int, int], np.ndarray | None, tuple[int, ...], np.dtype]] = {}

    def _ensure_vm(self) -> None:
        """The Relax VM on the target's device, with the weights uploaded once."""
        if self._vm is not None:
            return
        import tvm
        from tvm import relax

        _use_all_cores()
        self.device = _device(self.target)
        vm = relax.VirtualMachine(self._executable, self.device)
        self._main = vm["main"]
        self._tvm_weights = [tvm.runtime.tensor(np.asarray(self._weights[k], order="C"), self.device)
                             for k in self.weight_names]
        self._weight_spans = [_span(w) for w in self._tvm_weights]
        self._on_cpu = self.device.dlpack_device_type() == tvm.cpu().dlpack_device_type()
        self._vm = vm

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

    def _input_buffer(self, name: str, value: np.ndarray) -> Any:
        """The device tensor for input ``name`` holding ``value``: one per input,
        reused while the shape and dtype stay the same (allocating a tensor per
        call took 43 us of a 200 us call of the demo's model). Called under the
        lock."""
        import tvm

        held = self._in_bufs.get(name)
        # the shape and dtype held as Python values: asking the device tensor
        # for them went through the FFI on every call
        if held is None or held[3] != value.shape or held[4] != value.dtype:
            buf = tvm.runtime.empty(value.shape, str(value.dtype), self.device)
            # on the CPU, a NumPy view of the buffer: np.copyto is a memcpy, where
            # Tensor.copyfrom spent 15 us in Python on a 48 KiB input
            view = np.from_dlpack(buf) if self._on_cpu else None
            held = (buf, _span(buf), view, value.shape, value.dtype)
            self._in_bufs[name] = held
        buf, _, view, _, _ = held
        if view is not None:
            np.copyto(view, value)
        else:
            buf.copyfrom(np.ascontiguousarray(value))
        return buf

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs by name for inputs by name (NumPy arrays)."""
        import tvm
        from ..interp import bind_inputs

        values, symbols = bind_inputs(self.inputs, {k: _to_numpy(v) for k, v in inputs.items()}, self.name)
        with self._lock:
            self._ensure_vm()
            args = [self._input_buffer(v.name, values[v.name]) for v in self.inputs]
            try:
                result = self._main(*args, *self._tvm_weights)
            except Exception as e:  # the library disagrees with its manifest: say so on one line
                first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                raise EvalError(f"{self.name}: the compiled code rejected the call: {first}") from None
            outs = [result] if len(self.outputs) == 1 else list(result)
            # The VM allocates each call's outputs anew, so a CPU output can be
            # handed out without a copy (it stays alive as long as the array);
            # one that is a view of an input buffer (reused next call) or of a
            # weight is copied.
            owned = self._weight_spans + [held[1] for held in self._in_bufs.values()]
            arrays_out = []
            for o in outs:
                if self._on_cpu:
                    arr = np.from_dlpack(o)
                    if _overlaps_any(_array_span(arr), owned):
                        arr = arr.copy()
                else:
                    arr = o.numpy()
                arrays_out.append(arr)
        arrays = {}
        for v, arr in zip(self.outputs, arrays_out):
            want = v.type.concrete(symbols) if v.type.symbols() <= set(symbols) else None
            if want is not None and arr.shape != want:
                raise EvalError(f"{self.name}: output %{v.name} has shape {arr.shape}, the manifest says {want}")
            arrays[v.name] = arr
        return arrays

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        named = self._named(args, kwargs)
        torch_in = [v for v in named.values() if _is_torch(v)]
        out = self.run(named)
        vals = [out[v.name] for v in self.outputs]
        if torch_in:
            import torch

            device = torch_in[0].device  # outputs go back where the inputs came from
            vals = [torch.from_numpy(np.array(v, order="C")).to(device) for v in vals]
        return vals[0] if len(vals) == 1 else tuple(vals)

    def time(self, inputs: Mapping[str, Any], number: int = 1, repeat: int = 10) -> list[float]:
        """Seconds per call of the compiled main only (TVM's timer; arrays already on the device)."""
        import tvm
        from ..interp import bind_inputs

        values, _ = bind_inputs(self.inputs, {k: _to_numpy(v) for k, v in inputs.items()}, self.name)
        with self._lock:
            self._ensure_vm()
        args = [tvm.runtime.tensor(np.asarray(values[v.name], order="C"), self.device) for v in self.inputs]
        timer = self._vm.time_evaluator("main", self.device, number=number, repeat=repeat)
        with self._lock:
            return list(timer(*args, *self._tvm_weights).results)

    def save(self, directory: str | Path) -> Path:
        """Write this model as an artifact directory (atomically); returns its path."""
        d = Path(directory)

        def write_library(p: Path) -> None:
            if self._library is not None:  # loaded from an artifact: the library is already built
                shutil.copyfile(self._library, p)
            else:
                self._executable.export_library(str(p))

        art.write_artifact(d, self.manifest, self._weights, write_library)
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
    _check_cpu(d, manifest.raw)
    if manifest.target == "cuda":
        _device("cuda")  # no GPU: one line now, not a loader error from TVM
    weights = art.read_weights(d, manifest)
    try:
        lib = tvm.runtime.load_module(str(d / art.LIBRARY))
    except Exception as e:  # TVM raises its own error types; keep one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputFileError(f"{d / art.LIBRARY}: cannot load the compiled library: {first}") from None
    return CompiledModel(lib, manifest.raw, weights, library=d / art.LIBRARY)


def _check_cpu(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a CPU artifact built for another CPU model (its code may use
    instructions this one lacks: a SIGILL, not an error message)."""
    tgt = manifest["target"].get("tvm") or {}
    built_for = tgt.get("mcpu") if isinstance(tgt, dict) else None
    if manifest["target"]["name"] != "llvm" or not built_for:
        return
    from tvm.target import codegen

    here = str(codegen.llvm_get_system_cpu())
    if here != built_for:
        raise InputFileError(f"{directory}: compiled for CPU {built_for}, this machine is {here}; "
                             "recompile it here with `tensoropt compile`")


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
