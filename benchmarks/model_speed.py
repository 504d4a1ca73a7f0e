"""Whole-model latency: tensoropt-compiled models against onnxruntime, TVM's own path and PyTorch.

Models:
- the ONNX wheel's light CNNs (``onnx/backend/test/data/light/light_*.onnx``),
  batch 1, with seeded He-scaled random weights (their own weights are
  constants, so every logit would be equal) and the final Softmax cut;
  against onnxruntime, and for ``squeezenet`` and ``resnet50`` also TVM's
  default Relax path (``relax.frontend.onnx`` + ``tvm.compile``, untuned);
- GPT-2 built from a ``transformers`` config (2 layers, 256 wide, 4 heads,
  the real 50,257-token vocabulary, no KV cache), input_ids (1, 64), compiled
  with ``tensoropt.compile(module, example_inputs=(ids,))``; against PyTorch
  eager (``torch.inference_mode``) and onnxruntime on tensoropt's ONNX export
  of the same graph; BERT likewise (2 layers, 256 wide, 64 tokens);
- ``<model>@sym``: the same model with a symbolic dim, as real exports carry
  one: the light CNNs with a symbolic batch (``symbolic_speed.
  symbolic_batch_onnx``: what a dynamic-batch export writes), run at batch 1
  against onnxruntime on the same symbolic file; GPT-2 and BERT exported
  with a dynamic sequence length (and an explicit attention mask), run at 64
  tokens.

Every side is timed the same way (:mod:`tensoropt.bench`): warm-up calls,
then wall clock around each full call, NumPy in and out; medians of 20 runs
(fewer, but at least 5, where a side's calls are slow); ratio =
tensoropt median / peer median. onnxruntime, PyTorch and TVM all use 2
threads (this machine's cores). Writes ``benchmarks/results/model_speed.json``
(after every model, so a long run keeps what it has) and ``model_speed.png``,
and prints a markdown table for the README.

    python benchmarks/model_speed.py [--quick] [--models squeezenet,squeezenet@sym,gpt2] [--repeat 20] [--no-relax]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
THREADS = 2
#: models that also run TVM's default Relax path (it builds and runs slowly).
RELAX_SUBSET = ("squeezenet", "resnet50")
QUICK = ("squeezenet", "shufflenet", "shufflenet@sym", "gpt2", "gpt2@sym")
#: random weights above this many MiB make a model impractical here: skipped with a note.
MAX_WEIGHTS_MIB = 1024


def light_models() -> dict[str, Path]:
    import onnx

    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(light.glob("light_*.onnx"))}


def weights_mib(path: Path) -> float:
    """MiB of float32 weights the light model's ConstantOfShape nodes and initializers make."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    total = sum(a.size for a in consts.values() if a.dtype.kind == "f")
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in consts:
            total += int(np.prod(consts[n.input[0]]))
    return total * 4 / 2**20


def gpt2_model() -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(n_layer=2, n_embd=256, n_head=4, n_positions=128, vocab_size=50257, use_cache=False)
    torch.manual_seed(0)
    config = GPT2Config(**cfg)
    config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config).eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, 64), dtype=np.int64))
    return model, ids, {**cfg, "input_ids": [1, 64], "attn_implementation": "eager"}


def bert_model() -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from transformers import BertConfig, BertModel

    cfg = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024,
               vocab_size=30522, max_position_embeddings=256)
    torch.manual_seed(0)
    model = BertModel(BertConfig(**cfg)).eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, 64), dtype=np.int64))
    return model, ids, {**cfg, "input_ids": [1, 64]}


#: suffix of a model name for its symbolic-dim version (batch for the CNNs,
#: sequence length for GPT-2 and BERT), timed at the same size as the static one
SYM = "@sym"


def _transformer_report(name: str, common: dict[str, Any]) -> dict[str, Any]:
    """GPT-2 or BERT (``name`` may end in ``@sym``: exported with a dynamic sequence length)."""
    import torch
    from torch.export import Dim

    from tensoropt import bench

    base = name.removesuffix(SYM)
    model, ids, cfg = gpt2_model() if base == "gpt2" else bert_model()
    mask = torch.ones_like(ids)
    if name.endswith(SYM):
        # an explicit mask: without it GPT-2's packed-sequence check makes a
        # seq + 1 sized tensor (tests/frontends/test_torch.py); positional,
        # so every side is called the same way
        class WithMask(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
                return self.inner(input_ids, attention_mask=attention_mask)

        seq = Dim("seq", min=2, max=128)
        subject: Any = torch.export.export(WithMask(model).eval(), (ids, mask), dynamic_shapes=({1: seq}, {1: seq}))
        example = None
        cfg = {**cfg, "dynamic": "sequence length (torch.export.Dim)"}
    else:
        subject, example = model, (ids,)
    inputs = [ids.numpy()] + ([mask.numpy()] if name.endswith(SYM) else [])
    report = bench.bench(subject, example, against=["torch", "onnxruntime"], inputs=inputs, **common)
    report["config"] = cfg
    return report


def run_one(name: str, path: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    from tensoropt import bench

    common = dict(repeat=args.repeat, warmup=args.warmup, threads=THREADS, max_seconds=args.max_seconds,
                  min_repeat=5, log=lambda m: print(f"  {m}", file=sys.stderr, flush=True), label=name)
    if path is None:  # gpt2, bert
        return _transformer_report(name, common)
    if name.endswith(SYM):
        import onnx

        from symbolic_speed import symbolic_batch_onnx

        proto = symbolic_batch_onnx(bench.randomize_onnx_weights(onnx.load(path), seed=0))
        report = bench.bench(proto, against=["onnxruntime"], bindings={"batch": 1}, seed=0, **common)
        report["notes"] = report.get("notes", []) + ["symbolic batch (benchmarks/symbolic_speed.py), run at 1"]
        return report
    against = ["onnxruntime"] + (["tvm-relax"] if name in RELAX_SUBSET and not args.no_relax else [])
    return bench.bench(path, against=against, random_weights=True, seed=0, **common)


def side(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    for r in report.get("results", []):
        if r["side"] == name:
            return r
    return None


def _ms(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if r["status"] != "ok":
        return "failed" if r["status"] == "failed" else "n/a"
    return f"{r['median_ms']:.2f}"


def _ratio(r: dict[str, Any] | None) -> str:
    return "-" if r is None or r["ratio"] is None else f"{r['ratio']:.2f}"


def markdown(models: list[dict[str, Any]]) -> str:
    head = ("| model | tensoropt compile (s) | tensoropt (ms) | onnxruntime (ms) | ratio vs onnxruntime "
            "| PyTorch eager (ms) | ratio vs PyTorch | TVM Relax default (ms; build s) | max rel diff |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rep in models:
        if "error" in rep:
            lines.append(f"| {rep['model']} | {rep['error']} |||||||")
            continue
        to, ort, pt, rx = (side(rep, s) for s in ("tensoropt", "onnxruntime", "torch", "tvm-relax"))
        ok = [r for r in (ort, pt, rx) if r is not None and r["status"] == "ok"]
        diff = max((r["max_rel_diff"] for r in ok), default=None)
        relax = "-" if rx is None else (f"{rx['median_ms']:.1f}; {rx['compile_s']:.0f} s" if rx["status"] == "ok"
                                        else "failed")
        cells = [rep["model"], f"{to['compile_s']:.1f}", _ms(to), _ms(ort), _ratio(ort), _ms(pt), _ratio(pt), relax,
                 "-" if diff is None else f"{diff:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(models: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensoropt.atomic import atomic_write

    rows = []
    for rep in models:
        for peer in ("onnxruntime", "torch", "tvm-relax"):
            r = side(rep, peer) if "error" not in rep else None
            if r is not None and r["status"] == "ok":
                rows.append((rep["model"], peer, r["ratio"]))
    if not rows:
        return
    colors = {"onnxruntime": "tab:blue", "torch": "tab:orange", "tvm-relax": "tab:purple"}
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.8))
    y = np.arange(len(rows))
    ax.barh(y, [r[2] for r in rows], color=[colors[r[1]] for r in rows])
    ax.set_yticks(y, [f"{m} vs {p}" for m, p, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(3.0, color="red", ls="--", lw=1, label="goal: within 3x (ratio 3)")
    for i, (_, _, ratio) in enumerate(rows):
        ax.text(ratio * 1.05, i, f"{ratio:.2f}", va="center", fontsize=7)
    ax.set_xlabel("tensoropt median latency / peer median latency (log; below 1: tensoropt faster)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Batch-1 latency ratios, {THREADS} threads per side", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--models", default=None,
                    help="comma-separated: light model names, gpt2, bert, each also with @sym (symbolic dim)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="per side: fewer runs (>= 5) when 'repeat' runs would take longer than this")
    ap.add_argument("--no-relax", action="store_true", help="skip TVM's default Relax path")
    ap.add_argument("-o", "--output", default=str(OUT / "model_speed.json"))
    args = ap.parse_args()

    os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))
    from tensoropt.atomic import atomic_write_text
    from tensoropt.bench import TIMING, machine_info

    light = light_models()
    known = [m + sfx for m in [*light, "gpt2", "bert"] for sfx in ("", SYM)]
    names = list(known)
    if args.quick:
        names = list(QUICK)
    if args.models:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        bad = [m for m in names if m not in known]
        if bad:
            sys.exit(f"model_speed: unknown model {bad[0]!r}; known: {', '.join(known)}")
    out_json = Path(args.output)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine_info(),
        "threads": {"onnxruntime": f"intra_op_num_threads={THREADS}, inter_op 1",
                    "torch": f"torch.set_num_threads({THREADS})",
                    "tensoropt / tvm-relax": f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}"},
        "cache": "none: every model compiled in this run (tensoropt, onnxruntime sessions, TVM Relax)",
        "timing": TIMING + "; medians of --repeat runs (fewer, at least 5, when a side is slow)",
        "ratio": "tensoropt median / peer median (below 1: tensoropt is faster)",
        "weights": "light models: seeded He-scaled random weights, final Softmax cut (tensoropt.bench."
                   "randomize_onnx_weights); batch 1",
        "skipped": {},
        "models": [],
    }
    for name in names:
        path = light.get(name.removesuffix(SYM))
        if path is not None:
            mib = weights_mib(path)
            if mib > MAX_WEIGHTS_MIB:
                doc["skipped"][name] = f"{mib:.0f} MiB of weights: too large to be practical here"
                print(f"{name}: skipped ({doc['skipped'][name]})", file=sys.stderr)
                continue
        print(f"{name}:", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            report = run_one(name, path, args)
        except Exception as e:  # one model failing does not stop the table
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            report = {"model": name, "error": f"{type(e).__name__}: {first}"}
            print(f"  failed: {report['error']}", file=sys.stderr)
        report["wall_s"] = round(time.perf_counter() - t0, 1)
        report.setdefault("fallbacks", [])  # bench's records of kernels compiled to slower code (none if it failed)
        report["fallback_count"] = len(report["fallbacks"])
        report.pop("machine", None)  # stated once, at the top
        doc["models"].append(report)
        atomic_write_text(out_json, json.dumps(doc, indent=2, default=str) + "\n")
        for r in report.get("results", []):
            if r["status"] == "ok":
                print(f"  {r['side']:>12}: {r['median_ms']:9.2f} ms  (n={len(r['runs_ms'])}, ratio {r['ratio']:.2f}, "
                      f"rel diff {r['max_rel_diff']:.1e})", file=sys.stderr)
            else:
                print(f"  {r['side']:>12}: {r['status']} {r['error'] or r['note']}", file=sys.stderr)
        if report["fallback_count"]:
            print(f"  tensoropt: {report['fallback_count']} kernel fallback(s), listed in the JSON", file=sys.stderr)
    png = out_json.with_suffix(".png")
    plot(doc["models"], png)
    print(markdown(doc["models"]))
    m = doc["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores, {THREADS} threads per side; {doc['date']}. "
          f"Skipped: {', '.join(f'{k} ({v})' for k, v in doc['skipped'].items()) or 'none'}")
    print(f"wrote {out_json} and {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
