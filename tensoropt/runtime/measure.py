"""The one measuring interface below the API.

Every component that measures programs (derive's cost oracle today;
structured substitution and tuning next) needs the same four things, and
gets them here rather than from the API, the compiler entry point or the
bench module above it:

- :func:`compile_graph`: a :class:`Graph` built by codegen into a
  :class:`CompiledModel`, exactly as ``tensoropt.compile`` builds it (kernel
  fallbacks are recorded in the manifest and warned about the same way);
- :func:`random_values`: seeded inputs for a graph's (or a compiled model's)
  input Values, refused up front when one is over the evaluation budget;
- :func:`time_model`: seconds per call of a compiled model, measured with
  TVM's timer on resident inputs after a calibrating warm-up;
- :func:`cpu_model`, :func:`cpu_id`, :func:`isa`, :func:`threads` and
  :func:`device_model`: what ran the code, for cache keys;
  :func:`machine_record`: the same for results files.

Import order (DESIGN.md): this module imports ``ir``, ``interp``, ``codegen``
(inside :func:`compile_graph`: TVM loads only when something is built) and
the rest of ``runtime``; ``passes`` import it; it never imports the API, the
compiler entry point, ``bench`` or the CLI (``tests/test_layering.py``).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import platform
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from ..ir.graph import Graph
from ..ir.types import FLOAT_DTYPES, TensorType
from .artifact import FORMAT, VERSION, value_json
from .model import CompiledModel, versions


class FallbackWarning(UserWarning):
    """Some kernels of a compiled model got slower code than tensoropt meant to give them.

    Emitted once per compile that had fallbacks; the details are in
    ``model.manifest["fallbacks"]``. Filter it with
    ``warnings.simplefilter("ignore", tensoropt.FallbackWarning)``.
    """


#: Fallbacks a :class:`FallbackWarning` names before "and N more".
WARN_FIRST = 3


def fallback_summary(fallbacks: Sequence[Mapping[str, Any]], first: int = WARN_FIRST) -> str:
    """One line: how many fallbacks (how many are bugs), then the first few, kernel and reason."""
    n = len(fallbacks)
    bugs = sum(1 for f in fallbacks if f.get("bug"))
    head = f"{n} fallback{'s' if n != 1 else ''}" + (f" ({bugs} from bugs)" if bugs else "")
    shown = "; ".join(f"{f['kernel']}: {f['reason']}" for f in fallbacks[:first])
    more = f"; and {n - first} more" if n > first else ""
    return (f"tensoropt: {head}, some kernels run slower code: {shown}{more} "
            "(all of them in model.manifest['fallbacks'])")


def graph_hash(graph: Graph) -> str:
    """Content hash of a graph: its text form and its weights' bytes."""
    from ..ir.printer import print_graph

    return hashlib.sha256(print_graph(graph).encode() + graph.weights.digest().encode()).hexdigest()


def manifest_for(graph: Graph, built: Any, pipeline: str | None, source: dict[str, str]) -> dict[str, Any]:
    """The artifact manifest (see ``runtime/artifact.py``) for a built graph."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "inputs": [value_json(v) for v in graph.inputs],
        "outputs": [value_json(v) for v in graph.output_values],
        "weights": [c.name for c in graph.constants],
        "target": {"name": built.target, "tvm": built.target_json},
        "pipeline": pipeline or "",
        "source": source,
        "versions": versions(),
        "kernels": dict(built.kernels),
        "fallbacks": [f.to_json() for f in getattr(built, "fallbacks", ())],
        "build_seconds": {k: round(v, 3) for k, v in built.seconds.items()},
    }


def compile_graph(graph: Graph, target: str = "llvm", *, pipeline: str | None = None,
                  source: dict[str, str] | None = None, progress: Any = None,
                  stacklevel: int = 2) -> CompiledModel:
    """``graph`` built by codegen for ``target``, as a callable compiled model.

    ``pipeline`` and ``source`` only describe the graph in the manifest
    (``source`` defaults to the graph's content hash); the graph is built as
    given. When kernels fall back, one :class:`FallbackWarning` counts and
    names them (``stacklevel`` as for ``warnings.warn`` from this function:
    2 points at its caller).
    """
    from ..codegen import build as codegen_build  # looked up per call: tests replace the builder

    built = codegen_build.build(graph, target=target, progress=progress)
    weights = {c.name: graph.weights[c.name] for c in graph.constants}
    src = source if source is not None else {"kind": "graph", "sha256": graph_hash(graph)}
    manifest = manifest_for(graph, built, pipeline, src)
    if manifest["fallbacks"]:
        warnings.warn(FallbackWarning(fallback_summary(manifest["fallbacks"])), stacklevel=stacklevel)
    return CompiledModel(built.executable, manifest, weights)


def symbols_of(values: Sequence[Any]) -> list[str]:
    """Symbolic dims of a sequence of input Values, in order of first appearance."""
    seen: dict[str, None] = {}
    for v in values:
        for d in v.type.shape:
            if isinstance(d, str):
                seen.setdefault(d, None)
    return list(seen)


def random_values(values: Sequence[Any], *, seed: int = 0, bindings: Mapping[str, int] | None = None,
                  default_dim: int = 4) -> dict[str, np.ndarray]:
    """Seeded random arrays for input Values (a graph's, or a compiled model's).

    Floats are standard normal; integers are in ``[0, 2)`` so that they are
    valid indices for gather/embedding on any non-empty axis; bools are fair
    coins. Unbound symbolic dims take ``default_dim``. A value whose declared
    size is over the interpreter's evaluation budget is a ``BudgetError``
    before anything is allocated.
    """
    rng = np.random.default_rng(seed)
    binds = {s: default_dim for s in symbols_of(values)}
    binds.update(bindings or {})
    _check_input_budget(values, binds)
    return {v.name: _random_array(v.type, binds, rng) for v in values}


def _check_input_budget(values: Sequence[Any], binds: Mapping[str, int]) -> None:
    from ..errors import BudgetError
    from ..interp import evaluation_budget, format_bytes

    budget = evaluation_budget()
    for v in values:
        shape = v.type.concrete(dict(binds))
        size = math.prod(shape) * v.type.np_dtype.itemsize  # Python ints: no wrap-around
        if size > budget:
            raise BudgetError(f"input %{v.name} declares {TensorType(v.type.dtype, shape)} ({format_bytes(size)}): "
                              f"over the {format_bytes(budget)} evaluation budget")


def _random_array(t: TensorType, binds: Mapping[str, int], rng: np.random.Generator) -> np.ndarray:
    shape = t.concrete(dict(binds))
    if t.dtype in FLOAT_DTYPES:
        return rng.standard_normal(shape).astype(t.np_dtype)
    if t.dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 2, shape).astype(t.np_dtype)


#: Upper bound on calls per repeat, so a near-zero first estimate cannot make
#: one measurement run for minutes.
MAX_NUMBER = 1_000_000


def time_model(model: CompiledModel, inputs: Mapping[str, np.ndarray], repeat: int, min_seconds: float) -> list[float]:
    """Per-call seconds of ``model``'s main, ``repeat`` values, with TVM's timer on resident inputs.

    ``number`` calls per repeat are calibrated from a warm-up, so that the
    repeats together take about ``min_seconds``. The warm-up pays one-time
    costs (thread pool start, first touch of outputs) and estimates a call;
    its minimum is the least disturbed estimate.
    """
    warm = model.time(inputs, number=1, repeat=3)
    per_call = max(min(warm), 1e-9)
    per_repeat = min_seconds / repeat
    number = int(min(MAX_NUMBER, max(1, math.ceil(per_repeat / per_call))))
    return [float(t) for t in model.time(inputs, number=number, repeat=repeat)]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    return _cpuinfo_fields().get("model name") or platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def _cpuinfo_fields() -> Mapping[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (empty off Linux).

    Read once per process: the CPU does not change under it, and cost keys
    (:func:`device_model`) ask for it on every measurement. Read-only.
    """
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # end of the first processor
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    except OSError:
        pass
    return MappingProxyType(out)


#: CPU flags that decide which code and tiles codegen picks (x86 vector ISA; Arm's SIMD)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "amx_tile", "asimd", "sve", "sve2")


def cpu_id() -> str:
    """The CPU model name plus its family/model/stepping numbers.

    A VM often shows only a vendor line ("AMD EPYC") for CPUs as different as
    Zen 3 and Zen 5; the numbers tell them apart, so timings keyed by this
    string are never served to another CPU generation.
    """
    info = _cpuinfo_fields()
    nums = [f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info]
    return cpu_model() + (f" ({', '.join(nums)})" if nums else "")


def isa() -> dict[str, Any]:
    """The host's instruction set as codegen sees it: LLVM's name for the CPU and its vector flags."""
    info = _cpuinfo_fields()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    llvm_cpu = None
    try:
        import tvm

        llvm_cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    except Exception:  # TVM without LLVM: the flags still say what the CPU has
        pass
    return {"machine": platform.machine(), "llvm_cpu": llvm_cpu, "vector_flags": [f for f in ISA_FLAGS if f in flags],
            "mcpu_override": os.environ.get("TENSOROPT_MCPU")}


def machine_record() -> dict[str, Any]:
    """What a results file records about the machine: CPU model and ISA, cores,
    threads, OS, the versions of every package that was timed, and the load."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    import sys

    return {"cpu": cpu_model(), "cpu_id": cpu_id(), "isa": isa(), "cores": os.cpu_count(), "threads": threads(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            **{name: ver(dist) for name, dist in (("tvm", "apache-tvm"), ("onnxruntime", "onnxruntime"),
                                                  ("torch", "torch"), ("onnx", "onnx"), ("numpy", "numpy"))},
            "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def threads() -> str:
    """How many threads compiled CPU code runs on (``TVM_NUM_THREADS``, else the
    usable cores): part of any cost key, since the same CPU model with 2 or 16
    cores gives different times."""
    env = os.environ.get("TVM_NUM_THREADS")
    if env:
        return env
    try:
        return str(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return str(os.cpu_count() or 1)


def device_model(target: str) -> str:
    """What runs the code: the CPU (:func:`cpu_id`), plus the GPU's name for GPU targets."""
    cpu = cpu_id()
    if target.split()[0] == "llvm":
        return cpu
    try:
        import tvm

        dev = tvm.device(target.split()[0], 0)
        gpu = str(dev.device_name) if dev.exist else "no device"
    except Exception:  # an unknown device kind: the target string already distinguishes it
        gpu = "unknown"
    return f"{cpu} / {gpu}"
