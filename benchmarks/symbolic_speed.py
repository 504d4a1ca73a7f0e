"""Symbolic dims against their static twins: one compile with a symbolic batch
or sequence, against the same model compiled with that dim fixed.

Real exported models carry a symbolic batch or sequence; a compiler that only
does well on static shapes is slow on them. For each model and each size,
the symbolic build (compiled once, run at every size) and the static twin
(compiled for that size) are timed the same way, interleaved
(:func:`tensoropt.bench.interleaved_calls`: wall clock around each full call,
NumPy in and out, blocks of calls over rounds), and their outputs compared.

Models:
- ``small_cnn``: the demo's bundled ONNX model (``examples/small_cnn.onnx``,
  symbolic batch as shipped);
- the ONNX wheel's light CNNs with a symbolic batch: their input's batch dim
  made a symbol, the leading 1 of each constant ``Reshape`` target written
  as 0 (ONNX: "copy this dim"), which is what a dynamic-batch export writes,
  and Dropout's unused mask output dropped; seeded random weights
  (:func:`tensoropt.bench.randomize_onnx_weights`), Softmax cut;
- GPT-2 and BERT from ``transformers`` configs (random weights), exported
  with a dynamic sequence length (``torch.export.Dim``).

Writes ``benchmarks/results/symbolic_speed.json`` (after every model) and
``symbolic_speed.png``, and prints a markdown table.

    python benchmarks/symbolic_speed.py [--models small_cnn,resnet50,gpt2] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
THREADS = 2
LIGHT = ("squeezenet", "shufflenet", "resnet50", "densenet121", "inception_v1", "inception_v2",
         "bvlc_alexnet", "zfnet512", "vgg19")
#: model -> sizes of its symbolic dim to time
SIZES: dict[str, tuple[int, ...]] = {"small_cnn": (1, 4), "gpt2": (16, 64, 128), "bert": (16, 64, 128),
                                     **{m: (1, 2) for m in LIGHT}}
#: the goal of the issue that asked for this benchmark: symbolic within 1.2x of static
GOAL = 1.2


def symbolic_batch_onnx(model: Any, symbol: str = "batch") -> Any:
    """A copy of ``model`` with dim 0 of its run-time inputs symbolic (module docstring)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: t for t in m.graph.initializer}
    consts = dict(inits)
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    for n in m.graph.node:
        if n.op_type == "Reshape" and n.input[1] in consts:
            t = consts[n.input[1]]
            target = numpy_helper.to_array(t).copy()
            if target.size and target[0] == 1:
                target[0] = 0
                t.CopyFrom(numpy_helper.from_array(target, t.name))
        if n.op_type == "Dropout":
            del n.output[1:]
    for i in m.graph.input:
        if i.name not in inits:
            i.type.tensor_type.shape.dim[0].dim_param = symbol
    # the file's intermediate and output shapes were inferred for batch 1
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.type.tensor_type.shape.dim[0].dim_param = symbol
    return m


def fixed_batch_onnx(model: Any, value: int) -> Any:
    """A copy of ``model`` with every symbolic input dim set to ``value``."""
    import onnx

    m = onnx.ModelProto.FromString(model.SerializeToString())
    for v in (*m.graph.input, *m.graph.output):
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = value
    return m


def _onnx_case(name: str) -> tuple[Any, Callable[[int], Any], Callable[[int], list[np.ndarray]]]:
    """(symbolic model, size -> static twin, size -> inputs) for an ONNX model."""
    import onnx

    from tensoropt.bench import randomize_onnx_weights

    if name == "small_cnn":
        sym = onnx.load(ROOT / "examples" / "small_cnn.onnx")
    else:
        light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
        sym = symbolic_batch_onnx(randomize_onnx_weights(onnx.load(light / f"light_{name}.onnx"), seed=0))
    inits = {t.name for t in sym.graph.initializer}
    inp = next(i for i in sym.graph.input if i.name not in inits)
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]

    def inputs(n: int) -> list[np.ndarray]:
        return [np.random.default_rng(n).standard_normal([n] + dims[1:]).astype(np.float32)]

    return sym, (lambda n: fixed_batch_onnx(sym, n)), inputs


def _torch_case(name: str) -> tuple[Any, Callable[[int], Any], Callable[[int], list[np.ndarray]]]:
    """(symbolic Graph, size -> static Graph, size -> inputs) for a transformers model."""
    import torch
    import transformers
    from torch.export import Dim

    from tensoropt.frontends.torch import from_module

    torch.manual_seed(0)
    if name == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=256, n_head=4, n_positions=256, vocab_size=50257,
                                      use_cache=False)
        cfg._attn_implementation = "eager"
        module = transformers.GPT2LMHeadModel(cfg).eval()
        vocab = cfg.vocab_size
    else:
        cfg = transformers.BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=1024, vocab_size=30522, max_position_embeddings=256)
        module = transformers.BertModel(cfg).eval()
        vocab = cfg.vocab_size

    def ids(n: int) -> torch.Tensor:
        return torch.from_numpy(np.random.default_rng(n).integers(0, vocab, (1, n), dtype=np.int64))

    def args(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return ids(n), torch.ones(1, n, dtype=torch.int64)

    # An explicit attention mask: without it GPT-2's packed-sequence check
    # makes a seq + 1 sized tensor (see tests/frontends/test_torch.py).
    seq = Dim("seq", min=2, max=256)
    dyn = {"input_ids": {1: seq}, "attention_mask": {1: seq}}

    def graph(n: int, dynamic: bool) -> Any:
        i, m = args(n)
        return from_module(module, (i,), example_kwargs={"attention_mask": m},
                           dynamic_shapes=dyn if dynamic else None, name=name)

    return graph(16, True), (lambda n: graph(n, False)), (lambda n: [a.numpy() for a in args(n)])


def run_model(name: str, repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    import tensoropt
    from tensoropt.bench import interleaved_calls, max_rel_diff, stats_ms

    sym_model, twin, inputs = _torch_case(name) if name in ("gpt2", "bert") else _onnx_case(name)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sym = tensoropt.compile(sym_model)
    row: dict[str, Any] = {"model": name, "symbol": [str(d) for d in sym.inputs[0].type.shape],
                           "compile_s": round(time.perf_counter() - t0, 1),
                           "fallbacks": list(sym.manifest.get("fallbacks", [])),
                           "warnings": [str(w.message) for w in caught], "sizes": []}
    for n in SIZES[name]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            static = tensoropt.compile(twin(n))
        xs = inputs(n)
        out_s, out_t = sym(*xs), static(*xs)
        out_s = list(out_s) if isinstance(out_s, tuple) else [out_s]
        out_t = list(out_t) if isinstance(out_t, tuple) else [out_t]
        runs, failed = interleaved_calls({"symbolic": lambda: sym(*xs), "static": lambda: static(*xs)},
                                         warmup=3, repeat=repeat)
        if failed:
            raise RuntimeError(f"a side failed while timed: {failed}")
        s, t = stats_ms(runs["symbolic"]), stats_ms(runs["static"])
        ratio = s["median_ms"] / t["median_ms"]
        row["sizes"].append({"size": n, "symbolic": s, "static": t, "ratio": ratio,
                             "max_rel_diff": max_rel_diff(out_t, out_s),
                             "static_fallbacks": len(static.manifest.get("fallbacks", []))})
        log(f"  {n:>4}: symbolic {s['median_ms']:8.2f} ms  static {t['median_ms']:8.2f} ms  ratio {ratio:.2f}")
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | size | symbolic (ms) | static twin (ms) | ratio | symbolic fallbacks |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['error']} |||||")
            continue
        for s in r["sizes"]:
            lines.append(f"| {r['model']} | {s['size']} | {s['symbolic']['median_ms']:.2f} | "
                         f"{s['static']['median_ms']:.2f} | {s['ratio']:.2f} | {len(r['fallbacks'])} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensoropt.atomic import atomic_write

    bars = [(f"{r['model']} @{s['size']}", s["ratio"],
             (s["symbolic"]["min_ms"] / s["static"]["median_ms"], s["symbolic"]["max_ms"] / s["static"]["median_ms"]))
            for r in rows if "error" not in r for s in r["sizes"]]
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(bars) + 1.6))
    y = np.arange(len(bars))
    ratios = [b[1] for b in bars]
    ax.barh(y, ratios, color=["tab:green" if v <= GOAL else "tab:red" for v in ratios])
    ax.errorbar(ratios, y, xerr=[[v - lo for v, (lo, _) in zip(ratios, (b[2] for b in bars))],
                                 [hi - v for v, (_, hi) in zip(ratios, (b[2] for b in bars))]],
                fmt="none", ecolor="black", lw=0.6)
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(GOAL, color="red", ls="--", lw=1, label=f"goal: within {GOAL}x")
    ax.set_xlabel("symbolic median / static-twin median (whiskers: symbolic min..max over the static median)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"One symbolic compile vs a static compile per size, {THREADS} threads", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SIZES), help=f"comma-separated, from: {', '.join(SIZES)}")
    ap.add_argument("--repeat", type=int, default=15, help="timed calls per side and size (interleaved)")
    ap.add_argument("-o", "--output", default=str(OUT / "symbolic_speed.json"))
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in SIZES]
    if bad:
        sys.exit(f"symbolic_speed: unknown model {bad[0]!r}; known: {', '.join(SIZES)}")
    os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))
    import torch

    torch.set_num_threads(THREADS)
    from tensoropt.atomic import atomic_write_text
    from tensoropt.bench import TIMING, machine_info

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(),
                           "threads": THREADS, "timing": TIMING, "cache": "none: every compile in this run",
                           "ratio": "symbolic median / static-twin median", "goal": GOAL, "models": []}
    for name in names:
        print(f"{name}:", file=sys.stderr, flush=True)
        try:
            row = run_model(name, args.repeat, lambda m: print(m, file=sys.stderr, flush=True))
        except Exception as e:  # one model failing does not stop the table
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            row = {"model": name, "error": f"{type(e).__name__}: {first}"}
            print(f"  failed: {row['error']}", file=sys.stderr)
        doc["models"].append(row)
        atomic_write_text(out, json.dumps(doc, indent=2, default=str) + "\n")
    plot(doc["models"], out.with_suffix(".png"))
    print(markdown(doc["models"]))
    ratios = [s["ratio"] for r in doc["models"] if "error" not in r for s in r["sizes"]]
    if ratios:
        print(f"\nworst ratio {max(ratios):.2f}, geometric mean {statistics.geometric_mean(ratios):.2f}; "
              f"{doc['machine']['cpu']}; {doc['date']}")
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
