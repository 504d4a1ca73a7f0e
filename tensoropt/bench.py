"""Side-by-side speed of a tensoropt-compiled model against its peers.

``bench(model, against=[...])`` compiles ``model`` with tensoropt (LLVM, this
CPU), makes seeded random inputs, and times each side on the same inputs:

- ``tensoropt``: the compiled model (:class:`~tensoropt.runtime.model.CompiledModel`);
- ``onnxruntime``: an ``InferenceSession`` on the ONNX model (the file itself
  for ``.onnx``; for other sources the graph exported by
  :func:`tensoropt.frontends.onnx_export.to_onnx`);
- ``torch``: PyTorch eager (a ``torch.nn.Module``, or the ``.module()`` of an
  ExportedProgram / ``.pt2`` file); not applicable to ONNX and ``.top`` models;
- ``tvm-relax``: TVM's own default path on the same ONNX model
  (``relax.frontend.onnx.from_onnx`` + ``tvm.compile``'s default pipeline,
  LegalizeOps and no tuning) for the same LLVM target as tensoropt.

Every side is timed the same way: ``warmup`` calls each, then the
``repeat`` timed calls of every side in interleaved blocks (a few rounds; in
each, every side runs a block of calls, the order rotating from round to
round: :func:`interleaved_calls`), each call measured with
``time.perf_counter`` around the whole call, NumPy arrays in (copied to the
side's own tensors inside the call) and NumPy arrays out. Interleaved, a
machine that gets slower or faster during the run moves every side alike.
A peer that cannot be set up or run is reported as failed with a one-line
reason; the others go on. Outputs are compared with tensoropt's (largest
absolute difference over the largest magnitude of tensoropt's output).

The report is a plain dict (:func:`bench`), shown by :func:`table`, written by
:func:`write_json` and :func:`write_plot`. Its ``fallbacks`` lists the
kernels tensoropt compiled to slower code than planned (the manifest's
records; the tensoropt row's ``fallbacks`` counts them): a slow tensoropt time
with fallbacks is a fallback, not the schedules' best.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import InputFileError, TensoroptError
from .runtime.measure import cpu_model, machine_record  # noqa: F401 - cpu_model is also this module's API

#: peers a benchmark can be run against, in table order.
PEERS = ("onnxruntime", "torch", "tvm-relax")
#: peers ``tensoropt bench`` runs when ``--against`` is not given (tvm-relax is slow to build).
DEFAULT_PEERS = ("onnxruntime", "torch")
#: a max relative difference above this is flagged as a disagreement.
AGREE_TOL = 1e-3

#: rounds of interleaved blocks, and the pause before each block (see interleaved_calls).
#: The pause outlasts the other sides' spinning worker threads: OpenBLAS's spin
#: for about 0.1 s after a call, and PyTorch's matmul run just after NumPy's
#: measured 2.5-5 ms instead of 0.2 ms with a 0.05 s pause, 0.21 ms with 0.2 s
#: (64x768x256, 2 cores, 2026-12-07).
ROUNDS = 5
SETTLE_S = 0.25

TIMING = ("wall clock (time.perf_counter) around each full call: NumPy arrays in, copied to the "
          "side's tensors, run, outputs back as NumPy arrays; same for every side; after warm-up calls, "
          f"sides interleaved in blocks of calls over {ROUNDS} rounds (order rotating; a "
          f"{SETTLE_S * 1e3:.0f} ms pause and one untimed call before each block)")

Log = Callable[[str], None]


class BenchError(TensoroptError):
    """Bad benchmark options (unknown peer, bad counts, an option that does not fit the model)."""


def parse_against(text: str | Sequence[str]) -> list[str]:
    """Peer names from ``"onnxruntime,torch"`` (validated, order kept, no repeats)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if name not in PEERS:
            raise BenchError(f"--against {name!r}: unknown peer; valid: {', '.join(PEERS)}")
        if name not in out:
            out.append(name)
    return out


# --------------------------------------------------------------------------
# random weights for ONNX models whose weights are constants


def _onnx_consts(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    vals = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return vals


#: (op type, input index) -> the role of a weight there.
_ROLE_AT = {
    ("Conv", 1): "conv", ("Conv", 2): "bias", ("ConvTranspose", 1): "conv", ("ConvTranspose", 2): "bias",
    ("Gemm", 1): "gemm", ("Gemm", 2): "bias", ("MatMul", 1): "matmul",
    ("BatchNormalization", 1): "scale", ("BatchNormalization", 2): "bias",
    ("BatchNormalization", 3): "mean", ("BatchNormalization", 4): "var",
    ("InstanceNormalization", 1): "scale", ("InstanceNormalization", 2): "bias",
    ("LayerNormalization", 1): "scale", ("LayerNormalization", 2): "bias",
}


def _weight_roles(model: Any) -> dict[str, str]:
    roles: dict[str, str] = {}
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            role = _ROLE_AT.get((n.op_type, i))
            if role == "gemm" and any(a.name == "transB" and a.i for a in n.attribute):
                role = "gemm_t"
            if role is None and n.op_type == "Mul":
                role = "mul"
            if role is not None and name:
                roles.setdefault(name, role)
    return roles


def _random_weight(rng: np.random.Generator, shape: tuple[int, ...], role: str) -> np.ndarray:
    if role in ("conv", "gemm_t"):  # [out, in, ...]: He, std = sqrt(2 / fan_in)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if role in ("gemm", "matmul"):  # [..., in, out]
        fan_in = shape[-2] if len(shape) > 1 else shape[0]
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if role == "var":
        return rng.uniform(0.5, 1.5, shape)
    if role in ("scale", "mul"):
        return 1.0 + 0.1 * rng.standard_normal(shape)
    return 0.1 * rng.standard_normal(shape)  # biases, means, additive terms


#: roles for which a float initializer is a weight (other float initializers, e.g. an epsilon, stay).
_INITIALIZER_ROLES = {"conv", "gemm", "gemm_t", "matmul", "scale", "bias", "mean", "var"}


def randomize_onnx_weights(model: Any, seed: int = 0, *, cut_softmax: bool = True) -> Any:
    """A copy of the ONNX ``model`` with seeded random weights (He-scaled; variances positive).

    Replaced: every float ``ConstantOfShape`` output (the ONNX wheel's light
    models compute all weights that way, so all their logits are equal), and
    float initializers that are weights of Conv, Gemm, MatMul or a
    normalization. With ``cut_softmax`` a final Softmax that makes the only
    output is cut, so the output is the logits. The input is not changed.
    """
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    consts = _onnx_consts(model)
    roles = _weight_roles(model)
    g = model.graph
    new_inits = []
    keep_nodes = []
    shape_inputs: set[str] = set()
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input and n.input[0] in consts:
            value = numpy_helper.to_array(n.attribute[0].t) if n.attribute else np.zeros(1, np.float32)
            if value.dtype.kind == "f":
                shape = tuple(int(d) for d in consts[n.input[0]].reshape(-1))
                w = _random_weight(rng, shape, roles.get(n.output[0], "bias")).astype(value.dtype)
                new_inits.append(numpy_helper.from_array(w, n.output[0]))
                shape_inputs.add(n.input[0])
                continue
        keep_nodes.append(n)
    replaced = []
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        role = roles.get(t.name)
        if arr.dtype.kind == "f" and role in _INITIALIZER_ROLES:
            w = _random_weight(rng, arr.shape, role).astype(arr.dtype)
            replaced.append(numpy_helper.from_array(w, t.name))
        else:
            replaced.append(t)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep_nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(replaced + new_inits)
    if out.ir_version < 4:  # IR 3 lists every initializer as a graph input too
        out.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in new_inits)
    if cut_softmax and keep_nodes and len(g.output) == 1:
        last = keep_nodes[-1]
        if last.op_type == "Softmax" and last.output[0] == g.output[0].name:
            out.graph.node.pop()
            del out.graph.output[:]
            out.graph.output.append(_value_info_of(model, last.input[0], g.output[0]))
    # the shape vectors of the replaced ConstantOfShape nodes are dead now
    used = {i for n in out.graph.node for i in n.input} | {o.name for o in out.graph.output}
    dead = {s for s in shape_inputs if s not in used}
    kept_nodes = [n for n in out.graph.node if not (n.op_type == "Constant" and n.output[0] in dead)]
    kept_inits = [t for t in out.graph.initializer if t.name not in dead]
    kept_inputs = [v for v in out.graph.input if v.name not in dead]
    del out.graph.node[:], out.graph.initializer[:], out.graph.input[:]
    out.graph.node.extend(kept_nodes)
    out.graph.initializer.extend(kept_inits)
    out.graph.input.extend(kept_inputs)
    return out


def _value_info_of(model: Any, name: str, like: Any) -> Any:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for v in inferred.graph.value_info:
            if v.name == name:
                return v
    except Exception:  # shape inference is a nicety here: fall back to dtype only
        pass
    return onnx.helper.make_tensor_value_info(name, like.type.tensor_type.elem_type, None)


def onnx_run_inputs(model: Any) -> list[str]:
    """Names of the ONNX model's run-time inputs (graph inputs that are not initializers), in order."""
    inits = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in inits]


# --------------------------------------------------------------------------
# the model under test and its forms for each side


@dataclass
class Subject:
    """The model in every form a side needs (filled lazily where costly)."""

    label: str
    kind: str  # "onnx", "top", "pt2", "torch.nn.Module", "torch.export", "graph"
    graph: Any  # tensoropt Graph
    onnx_model: Any = None  # onnx.ModelProto, the source's own for ONNX models
    onnx_source: str = ""  # where onnx_model came from
    torch_module: Any = None  # callable torch module, if the model has a PyTorch form
    torch_na: str = ""  # why torch does not apply
    notes: list[str] = field(default_factory=list)

    def onnx(self) -> Any:
        if self.onnx_model is None:
            from .frontends.onnx_export import to_onnx

            self.onnx_model = to_onnx(self.graph)
            self.onnx_source = "exported from the tensoropt graph (tensoropt.frontends.onnx_export)"
        return self.onnx_model


def load_subject(model: Any, example_inputs: Sequence[Any] | None = None, *, random_weights: bool = False,
                 seed: int = 0, onnx_model: Any = None) -> Subject:
    """Everything :func:`bench` needs to know about ``model`` (same kinds as ``tensoropt.compile``)."""
    from .compiler import to_graph

    if random_weights:
        if isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".onnx":
            from .frontends.onnx import read_model

            model = read_model(Path(model)), Path(model).stem
        elif type(model).__name__ == "ModelProto":
            model = model, model.graph.name or "onnx"
        else:
            raise BenchError("--random-weights applies to ONNX models only (other models carry their weights)")
        proto, label = model
        proto = randomize_onnx_weights(proto, seed)
        graph, _ = to_graph(proto)
        return Subject(label, "onnx", graph, proto, "the ONNX model with random weights",
                       torch_na="not applicable (ONNX model)",
                       notes=[f"random weights (seed {seed}), final Softmax cut"])
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            from .frontends.onnx import read_model

            proto = read_model(p)
            graph, _ = to_graph(proto)
            return Subject(p.stem, "onnx", graph, proto, f"the file {p.name}",
                           torch_na="not applicable (ONNX model)")
        if suffix == ".pt2":
            if not p.is_file():
                raise InputFileError(f"{p}: no such file")
            import torch

            try:
                with warnings.catch_warnings():  # torch's own deprecation notices while unpacking
                    warnings.simplefilter("ignore", FutureWarning)
                    ep = torch.export.load(str(p))
            except Exception as e:
                raise InputFileError(f"{p}: cannot load the torch.export archive: {_first_line(e)}") from None
            graph, _ = to_graph(ep)
            return Subject(p.stem, "pt2", graph, onnx_model, "given" if onnx_model is not None else "",
                           torch_module=ep.module())
        graph, info = to_graph(p)  # .top (and the errors for anything else)
        return Subject(p.stem, info["kind"], graph, onnx_model, "given" if onnx_model is not None else "",
                       torch_na=f"not applicable (.{info['kind']} model)")
    graph, info = to_graph(model, example_inputs)
    kind = info["kind"]
    if kind == "onnx":
        return Subject(model.graph.name or "onnx", kind, graph, model, "the given ModelProto",
                       torch_na="not applicable (ONNX model)")
    if kind == "torch.export":
        return Subject(graph.name, kind, graph, onnx_model, "given" if onnx_model is not None else "",
                       torch_module=model.module())
    if kind == "torch.nn.Module":
        return Subject(type(model).__name__, kind, graph, onnx_model, "given" if onnx_model is not None else "",
                       torch_module=model)
    return Subject(graph.name, kind, graph, onnx_model, "given" if onnx_model is not None else "",
                   torch_na="not applicable (tensoropt Graph)")


# --------------------------------------------------------------------------
# the sides: each a zero-argument call returning the outputs as NumPy arrays


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _ort_side(subject: Subject, inputs: Sequence[np.ndarray], threads: int) -> Callable[[], list[np.ndarray]]:
    import onnxruntime as ort

    model = subject.onnx()
    names = onnx_run_inputs(model)
    if len(names) != len(inputs):
        raise BenchError(f"the ONNX model has {len(names)} run-time inputs, tensoropt's has {len(inputs)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # no warnings about unused initializers on stderr
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = dict(zip(names, inputs))
    return lambda: [np.asarray(o) for o in sess.run(None, feeds)]


def torch_side(module: Any, inputs: Sequence[np.ndarray], threads: int) -> Callable[[], list[np.ndarray]]:
    """PyTorch eager on ``inputs``, NumPy in and out like every other side (eval mode, inference mode)."""
    import torch
    from torch.utils._pytree import tree_leaves

    torch.set_num_threads(threads)
    if isinstance(module, torch.nn.Module) and not type(module).__name__.endswith("GraphModule"):
        module.eval()

    def call() -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*(torch.from_numpy(a) for a in inputs))
            return [t.numpy() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]

    return call


def _relax_side(subject: Subject, inputs: Sequence[np.ndarray], target: str) -> Callable[[], list[np.ndarray]]:
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from .codegen.build import make_target

    model = subject.onnx()
    names = onnx_run_inputs(model)
    if len(names) != len(inputs):
        raise BenchError(f"the ONNX model has {len(names)} run-time inputs, tensoropt's has {len(inputs)}")
    mod = from_onnx(model, shape_dict={n: list(a.shape) for n, a in zip(names, inputs)},
                    dtype_dict={n: str(a.dtype) for n, a in zip(names, inputs)}, keep_params_in_input=False)
    ex = tvm.compile(mod, target=make_target(target))
    dev = tvm.cpu(0)
    vm = relax.VirtualMachine(ex, dev)
    main = vm["main"]

    def flat(o: Any) -> list[np.ndarray]:
        if hasattr(o, "numpy"):
            return [o.numpy()]
        return [a for x in o for a in flat(x)]

    def call() -> list[np.ndarray]:
        return flat(main(*(tvm.runtime.tensor(a, dev) for a in inputs)))

    return call


# --------------------------------------------------------------------------
# timing and statistics


def time_calls(fn: Callable[[], list[np.ndarray]], warmup: int, repeat: int, max_seconds: float | None = None,
               min_repeat: int = 5) -> tuple[list[np.ndarray], list[float]]:
    """Outputs of the first call, and ``repeat`` wall-clock seconds after ``warmup`` calls.

    With ``max_seconds``, ``repeat`` shrinks to what fits in about that time
    (judged by the last warm-up call), but not below ``min_repeat``.
    """
    outs = fn()
    last = None
    for _ in range(max(warmup - 1, 0)):
        t0 = time.perf_counter()
        fn()
        last = time.perf_counter() - t0
    if max_seconds is not None and last is not None and last > 0:
        repeat = max(min(repeat, int(max_seconds / last)), min(min_repeat, repeat))
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return outs, runs


def interleaved_calls(sides: Mapping[str, Callable[[], Any]], warmup: int, repeat: int,
                      max_seconds: float | None = None, min_repeat: int = 5, *,
                      rounds: int = ROUNDS, settle_s: float = SETTLE_S
                      ) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Wall-clock seconds of ``repeat`` calls of every side, interleaved (module docstring).

    Each side first makes ``warmup`` untimed calls. The timed calls are then
    made in ``rounds`` rounds; in each, every side runs one block of calls
    back to back (the order rotating from round to round), after a pause of
    ``settle_s`` and one untimed call. Blocks, not single calls: a side's
    thread pool spins for a while after each call, and a call interleaved
    with another side's spinning threads measured the contention (tensoropt
    on the demo model, interleaved call by call with onnxruntime: a median of
    10.8 ms for a 0.12 ms call). With ``max_seconds``, ``repeat`` shrinks to
    what fits the slowest side in about that time (judged by its last warm-up
    call), but not below ``min_repeat``. A side that raises drops out with
    its one-line error in the second dict; the others go on.
    """
    live = dict(sides)
    failed: dict[str, str] = {}
    last: dict[str, float] = {}

    def call(name: str) -> float | None:
        t0 = time.perf_counter()
        try:
            live[name]()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a side's failure is a result, not a crash
            failed[name] = _first_line(e)
            del live[name]
            return None
        return time.perf_counter() - t0

    for name in list(live):
        for _ in range(warmup):
            dt = call(name)
            if dt is None:
                break
            last[name] = dt
    if max_seconds is not None:
        slowest = max((last[n] for n in live if n in last), default=0.0)
        if slowest > 0:
            repeat = max(min(repeat, int(max_seconds / slowest)), min(min_repeat, repeat))
    rounds = max(1, min(rounds, repeat))
    blocks = [repeat // rounds + (1 if r < repeat % rounds else 0) for r in range(rounds)]
    runs: dict[str, list[float]] = {n: [] for n in live}
    order = list(live)
    for r, size in enumerate(blocks):
        k = r % len(order) if order else 0
        for name in order[k:] + order[:k]:
            if name not in live:
                continue
            if settle_s > 0:
                time.sleep(settle_s)
            if call(name) is None:  # untimed: wakes the side's threads and caches after the others ran
                continue
            for _ in range(size):
                dt = call(name)
                if dt is None:
                    break
                runs[name].append(dt)
    return {n: v for n, v in runs.items() if n in live}, failed


def stats_ms(runs_s: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, quartiles and IQR (ms) of timings in seconds."""
    ms = [r * 1e3 for r in runs_s]
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = ms[0]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "q1_ms": q1,
            "q3_ms": q3, "iqr_ms": q3 - q1, "runs_ms": [round(x, 4) for x in ms]}


def max_rel_diff(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> float:
    """Largest |theirs - ours| over the largest |ours|, across all outputs (positionally)."""
    if len(ours) != len(theirs):
        raise BenchError(f"{len(theirs)} outputs, tensoropt gives {len(ours)}")
    worst = 0.0
    for a, b in zip(ours, theirs):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.shape != b64.shape:
            if a64.size != b64.size:
                raise BenchError(f"output shape {list(b64.shape)}, tensoropt gives {list(a64.shape)}")
            b64 = b64.reshape(a64.shape)
        if a64.size == 0:
            continue
        scale = max(float(np.max(np.abs(a64))), 1e-30)
        worst = max(worst, float(np.max(np.abs(a64 - b64))) / scale)
    return worst


# --------------------------------------------------------------------------
# machine facts


def machine_info() -> dict[str, Any]:
    """The machine a results file was measured on (:func:`tensoropt.runtime.measure.machine_record`)."""
    return machine_record()


def tvm_threads(threads: int) -> int:
    """Make TVM's thread pool use ``threads`` workers, unless TVM_NUM_THREADS says otherwise.

    TVM's default halves the core count on x86 (assuming hyper-threads), which
    on a small VM would give tensoropt half the cores its peers get. The
    setting takes effect if the pool has not started yet; returns what it uses.
    """
    import tvm

    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    return int(tvm.get_global_func("runtime.NumThreads")())


# --------------------------------------------------------------------------
# the benchmark


def _row(side: str, status: str, **kw: Any) -> dict[str, Any]:
    row = {"side": side, "status": status, "median_ms": None, "min_ms": None, "max_ms": None, "q1_ms": None,
           "q3_ms": None, "iqr_ms": None, "runs_ms": [], "ratio": None, "max_rel_diff": None, "agree": None,
           "compile_s": None, "error": None, "note": "", "fallbacks": None}  # fallbacks: tensoropt's count
    row.update(kw)
    return row


def bench(model: Any, example_inputs: Sequence[Any] | None = None, *,
          against: Sequence[str] = DEFAULT_PEERS, repeat: int = 20, warmup: int = 3, seed: int = 0,
          bindings: Mapping[str, int] | None = None, threads: int | None = None, pipeline: str | None = None,
          random_weights: bool = False, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
          max_seconds: float | None = None, min_repeat: int = 5,
          onnx_model: Any = None, target: str = "llvm", log: Log | None = None,
          compile_progress: Any = None, label: str | None = None) -> dict[str, Any]:
    """Time ``model`` compiled by tensoropt against ``against``; the report as a dict (see module doc).

    ``inputs`` (by tensoropt input name, or positional) replaces the seeded
    random inputs; with ``max_seconds`` a side whose calls are slow makes
    fewer timed calls (about ``max_seconds`` in all, at least ``min_repeat``);
    ``onnx_model`` replaces the ONNX form that onnxruntime and tvm-relax run
    (by default the ONNX source itself, else tensoropt's export of the graph).
    """
    from . import api
    from .compiler import compile as compile_model

    peers = parse_against(against)
    if repeat < 1 or warmup < 0:
        raise BenchError(f"--repeat must be >= 1 and --warmup >= 0 (got {repeat} and {warmup})")
    threads = int(threads or os.cpu_count() or 1)
    say = log or (lambda msg: None)
    subject = load_subject(model, example_inputs, random_weights=random_weights, seed=seed, onnx_model=onnx_model)
    if onnx_model is not None:
        subject.onnx_model, subject.onnx_source = onnx_model, "given"
    label = label or subject.label
    binds = dict(bindings or {})
    api.check_bindings(subject.graph, binds, what="model")

    tvm_n = tvm_threads(threads)
    say(f"compiling {label} with tensoropt ({target})")
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the report records them (and `table` shows them): no Python warning too
        from .compiler import FallbackWarning

        warnings.simplefilter("ignore", FallbackWarning)
        compiled = compile_model(subject.graph, pipeline=pipeline, target=target, progress=compile_progress)
    compile_s = time.perf_counter() - t0
    fallbacks = list(compiled.manifest.get("fallbacks", []))
    if fallbacks:
        say(f"{len(fallbacks)} kernel fallback(s): tensoropt runs slower code for them (see the report)")
    if inputs is None:
        inputs = api.random_values(compiled.inputs, seed=seed, bindings=binds)
    elif not isinstance(inputs, Mapping):
        if len(inputs) != len(compiled.input_names):
            raise BenchError(f"{len(inputs)} inputs given, the model takes {len(compiled.input_names)} "
                             f"({', '.join(compiled.input_names)})")
        inputs = dict(zip(compiled.input_names, inputs))
    missing = [n for n in compiled.input_names if n not in inputs]
    if missing:
        raise BenchError(f"no value for input {missing[0]!r} (inputs: {', '.join(compiled.input_names)})")
    arrays = [np.ascontiguousarray(inputs[n]) for n in compiled.input_names]
    named = dict(zip(compiled.input_names, arrays))

    def ours() -> list[np.ndarray]:
        out = compiled.run(named)
        return [out[n] for n in compiled.output_names]

    ref = ours()  # the reference outputs every peer is compared with
    sides: dict[str, Callable[[], list[np.ndarray]]] = {"tensoropt": ours}
    notes = {"tensoropt": f"{target}, {tvm_n} threads"}
    setup = {"tensoropt": compile_s}
    diffs = {"tensoropt": 0.0}
    thread_info = {"tensoropt": tvm_n}
    failed: dict[str, str] = {}
    for peer in peers:
        if peer == "torch" and subject.torch_module is None:
            continue
        say(f"setting up {peer}")
        try:
            t0 = time.perf_counter()
            if peer == "onnxruntime":
                fn, notes[peer], thread_info[peer] = _ort_side(subject, arrays, threads), f"{threads} threads", threads
            elif peer == "torch":
                fn, notes[peer], thread_info[peer] = (torch_side(subject.torch_module, arrays, threads),
                                                      f"eager, {threads} threads", threads)
            else:
                fn, notes[peer], thread_info[peer] = (_relax_side(subject, arrays, target),
                                                      f"untuned, {tvm_n} threads", tvm_n)
            setup[peer] = time.perf_counter() - t0
            diffs[peer] = max_rel_diff(ref, fn())
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a peer's failure is a result, not a crash
            failed[peer] = _first_line(e)
            say(f"{peer} failed: {_first_line(e)}")
            continue
        sides[peer] = fn
    say(f"timing {', '.join(sides)} interleaved ({warmup} warm-up + {repeat} calls each, in {ROUNDS} rounds)")
    runs, failed_timing = interleaved_calls(sides, warmup, repeat, max_seconds, min_repeat)
    failed.update(failed_timing)
    if "tensoropt" in failed:
        raise BenchError(f"the compiled model failed while being timed: {failed['tensoropt']}")
    results = [_row("tensoropt", "ok", **stats_ms(runs["tensoropt"]), ratio=1.0, max_rel_diff=0.0, agree=True,
                    compile_s=round(compile_s, 3), note=notes["tensoropt"], fallbacks=len(fallbacks))]
    base = results[0]["median_ms"]
    for peer in peers:
        if peer == "torch" and subject.torch_module is None:
            results.append(_row(peer, "not applicable", note=subject.torch_na))
        elif peer in failed:
            results.append(_row(peer, "failed", error=failed[peer]))
        else:
            st = stats_ms(runs[peer])
            results.append(_row(peer, "ok", **st, ratio=base / st["median_ms"], max_rel_diff=diffs[peer],
                                agree=bool(diffs[peer] <= AGREE_TOL), compile_s=round(setup[peer], 3),
                                note=notes[peer]))

    return {
        "model": label,
        "source": subject.kind,
        "notes": subject.notes,
        "onnx": subject.onnx_source or None,  # what onnxruntime / tvm-relax ran
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "threads": thread_info,
        "inputs": {n: {"shape": list(a.shape), "dtype": str(a.dtype)} for n, a in named.items()},
        "outputs": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)}
                    for n, a in zip(compiled.output_names, ref)],
        "warmup": warmup,
        "repeat": repeat,
        "seed": seed,
        "timing": TIMING,
        "ratio": "tensoropt median / peer median (below 1: tensoropt is faster)",
        "agree_tol": AGREE_TOL,
        "fallbacks": fallbacks,  # kernels tensoropt ran slower code for (codegen.schedule.Fallback records)
        "results": results,
    }


# --------------------------------------------------------------------------
# showing and writing reports


def _f(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def table(report: Mapping[str, Any]) -> Any:
    """A rich renderable: the results table, then one line per side with its notes or failure."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    ins = ", ".join(f"{n}: {d['dtype']}{d['shape']}" for n, d in report["inputs"].items())
    t = Table(title=f"{report['model']} ({ins}); {report['warmup']} warm-up calls, then timed runs",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in ("side", "runs", "median ms", "min", "max", "IQR", "ratio", "rel diff"):
        t.add_column(c, justify="left" if c == "side" else "right", no_wrap=True)
    notes = []
    for r in report["results"]:
        if r["status"] != "ok":
            t.add_row(r["side"], "-", "n/a" if r["status"] == "not applicable" else "failed", "-", "-", "-", "-", "-")
            notes.append(f"{r['side']}: {r['note'] if r['status'] == 'not applicable' else 'failed: ' + r['error']}")
            continue
        diff = _f(r["max_rel_diff"], ".1e")
        if r["agree"] is False:
            diff = f"[bold red]{diff} ![/]"
        t.add_row(r["side"], str(len(r["runs_ms"])), f"{r['median_ms']:.3f}", f"{r['min_ms']:.3f}",
                  f"{r['max_ms']:.3f}", f"{r['iqr_ms']:.3f}", f"{r['ratio']:.2f}", diff)
        extra = f"; set up in {r['compile_s']:.2f} s" if r["compile_s"] is not None else ""
        notes.append(f"{r['side']}: {r['note']}{extra}")
        if r["agree"] is False:
            notes.append(f"{r['side']}: outputs DISAGREE with tensoropt's (rel diff {r['max_rel_diff']:.1e} "
                         f"> {report['agree_tol']:g})")
    fallbacks = report.get("fallbacks") or []
    if fallbacks:
        notes.append(f"tensoropt: {len(fallbacks)} kernel fallback(s) (slower code than planned):")
        notes += [f"  {f['kernel']} [{f['stage']}{', bug' if f.get('bug') else ''}]: {f['reason']}" for f in fallbacks]
    if report.get("onnx"):
        notes.append(f"ONNX model run by the peers: {report['onnx']}")
    notes += list(report.get("notes", []))
    notes.append(f"rel diff: max |peer - tensoropt| / max |tensoropt| (flagged above {report['agree_tol']:g}); "
                 "ratio: tensoropt median / peer median (below 1: tensoropt faster)")
    return Group(t, *(Text("  " + n) for n in notes))


def write_json(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    import json

    from .atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(report, indent=2, default=str) + "\n")


def write_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """A PNG bar chart: median per side, min-max error bars, ratio above each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_write

    rows = [r for r in report["results"] if r["status"] == "ok"]
    names = [r["side"] for r in rows]
    med = np.array([r["median_ms"] for r in rows])
    lo = med - np.array([r["min_ms"] for r in rows])
    hi = np.array([r["max_ms"] for r in rows]) - med
    fig, ax = plt.subplots(figsize=(1.6 * max(len(rows), 2) + 2, 4))
    colors = ["tab:green" if n == "tensoropt" else "tab:gray" for n in names]
    ax.bar(names, med, yerr=[lo, hi], capsize=6, color=colors)
    for i, r in enumerate(rows):
        ax.text(i, med[i] + hi[i], f"{r['median_ms']:.3g} ms\nratio {r['ratio']:.2f}",
                ha="center", va="bottom", fontsize=8)
    skipped = [f"{r['side']}: {r['status']}" for r in report["results"] if r["status"] != "ok"]
    ax.set_ylabel("ms per call (median; bars: min-max)")
    ax.set_ylim(0, float(max(med + hi)) * 1.3 if len(rows) else 1)
    ax.set_title(f"{report['model']}: median of timed runs per side, {report['machine']['cores']} cores"
                 + (f"\n({'; '.join(skipped)})" if skipped else ""), fontsize=9)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
