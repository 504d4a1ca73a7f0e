"""Small PyTorch models of the networks in the OLLIE paper's operator benchmarks.

Each model is built with seeded weights (``torch.manual_seed``), in eval mode,
float32, batch 1, and is small enough that tensoropt's NumPy reference
interpreter runs it in well under a second. They are meant to be imported
with :func:`tensoropt.frontends.torch.from_module` and then rewritten by the
derivation pass (``passes/derive``).

Models (:data:`MODELS`, name -> factory returning ``(module, example_inputs)``):

- ``resnet18_stage4``: ResNet-18's last-stage basic block at 7x7x512
  (conv3x3 + BN + ReLU + conv3x3 + BN + residual add + ReLU).
- ``dcgan``: the DCGAN generator (Radford et al.; nz=100, ngf=64, 3 channels,
  64x64 output), transposed convolutions 4x4/stride 2.
- ``infogan``: the MNIST InfoGAN generator (74 -> 1024 -> 128*7*7 -> 28x28).
- ``fsrcnn``: FSRCNN (Dong et al.; d=56, s=12, m=4, x2, 1 channel) on a
  32x32 image, with per-channel PReLU (it imports: torch's decomposition
  turns each PReLU into ``greater`` + ``mul`` + ``where`` nodes).

Longformer's banded (sliding-window, dilated) attention cannot be written as
a band op in PyTorch, so it has no model here; :func:`band_attention_reference`
is a NumPy reference of its two band products (OLLIE's G2BMM and GBMM) for
checking derived graphs later.

BatchNorm layers get random affine parameters and running statistics (drawn
from the same seed), so that folding them is not a no-op.

    python benchmarks/derive_models.py     # export, interpret, compare with torch, print op counts
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

SEED = 0
#: max |tensoropt - torch| / max |torch| allowed per output.
TOLERANCE = 1e-4


def _randomize_bn(module: nn.Module) -> None:
    """Give every BatchNorm random affine params and running stats (seeded by the caller)."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.1 * torch.randn(n))
                m.bias.copy_(0.1 * torch.randn(n))
                m.running_mean.copy_(0.1 * torch.randn(n))
                m.running_var.copy_(1.0 + 0.1 * torch.rand(n))


def _prepare(module: nn.Module) -> nn.Module:
    _randomize_bn(module)
    return module.float().eval()


# -- 1. ResNet-18, stage 4 basic block ------------------------------------------------


class ResNet18Stage4(nn.Module):
    """ResNet-18's last-stage basic block (no downsampling) at 7x7x512."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + x)


# -- 2. DCGAN generator -----------------------------------------------------------------


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): z (nz x 1 x 1) -> nc x 64 x 64."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),       # 4x4
            nn.BatchNorm2d(ngf * 8), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # 8x8
            nn.BatchNorm2d(ngf * 4), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 16x16
            nn.BatchNorm2d(ngf * 2), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),      # 32x32
            nn.BatchNorm2d(ngf), nn.ReLU(),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),           # 64x64
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


# -- 3. InfoGAN generator (MNIST) ---------------------------------------------------------


class InfoGANGenerator(nn.Module):
    """InfoGAN's MNIST generator: 74 = 62 noise + 10 categorical + 2 continuous codes."""

    def __init__(self, in_dim: int = 74) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(in_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Sigmoid(),                     # 28x28
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return self.deconv(y.view(-1, 128, 7, 7))


# -- 4. FSRCNN ------------------------------------------------------------------------------


class FSRCNN(nn.Module):
    """FSRCNN (Dong et al. 2016), d=56, s=12, m=4, upscale x2, 1 channel, per-channel PReLU."""

    def __init__(self, d: int = 56, s: int = 12, m: int = 4, scale: int = 2, channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d),  # feature extraction
                                   nn.Conv2d(d, s, 1), nn.PReLU(s)]                    # shrinking
        for _ in range(m):                                                              # mapping
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]                                     # expanding
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4,
                                         output_padding=scale - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))


# -- 5. Longformer band attention (NumPy reference only) -------------------------------------


def band_attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                             width: int, dilation: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Longformer sliding-window dilated attention, without softmax (OLLIE's G2BMM then GBMM).

    ``q``, ``k``: ``[..., seq, d]``; ``v``: ``[..., seq, dv]``; ``width`` is the
    half-width W of the window, so each position sees ``2W + 1`` keys at offsets
    ``(t - W) * dilation``, ``t = 0..2W``. Keys outside ``[0, seq)`` count as
    zero (zero padding). Returns

    - ``scores[..., i, t] = sum_c q[..., i, c] * k[..., i + (t - W) * dilation, c]``
      (``[..., seq, 2W + 1]``), and
    - ``out[..., i, c] = sum_t scores[..., i, t] * v[..., i + (t - W) * dilation, c]``
      (``[..., seq, dv]``), computed in float64 from the inputs and cast back
      to ``q``'s dtype.
    """
    q = np.asarray(q)
    k = np.asarray(k)
    v = np.asarray(v)
    if q.shape != k.shape or q.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"band_attention_reference: q {q.shape}, k {k.shape}, v {v.shape} do not match")
    if width < 0 or dilation < 1:
        raise ValueError(f"band_attention_reference: need width >= 0 and dilation >= 1, got {width}, {dilation}")
    seq = q.shape[-2]
    qd, kd, vd = (a.astype(np.float64) for a in (q, k, v))
    scores = np.zeros(q.shape[:-1] + (2 * width + 1,), dtype=np.float64)
    out = np.zeros(v.shape, dtype=np.float64)
    for t in range(2 * width + 1):
        off = (t - width) * dilation
        lo, hi = max(0, -off), min(seq, seq - off)  # rows i with 0 <= i + off < seq
        if lo >= hi:
            continue
        s = np.einsum("...ic,...ic->...i", qd[..., lo:hi, :], kd[..., lo + off:hi + off, :])
        scores[..., lo:hi, t] = s
        out[..., lo:hi, :] += s[..., None] * vd[..., lo + off:hi + off, :]
    return scores.astype(q.dtype), out.astype(q.dtype)


def _band_attention_naive(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                          width: int, dilation: int) -> tuple[np.ndarray, np.ndarray]:
    """Loop-by-loop version of :func:`band_attention_reference` (2-D inputs), a self-check."""
    seq, _ = q.shape
    scores = np.zeros((seq, 2 * width + 1))
    out = np.zeros((seq, v.shape[1]))
    for i in range(seq):
        for t in range(2 * width + 1):
            j = i + (t - width) * dilation
            if 0 <= j < seq:
                scores[i, t] = float(np.dot(q[i].astype(np.float64), k[j].astype(np.float64)))
                out[i] += scores[i, t] * v[j].astype(np.float64)
    return scores, out


# -- the table -------------------------------------------------------------------------------


def _resnet18_stage4() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    return _prepare(ResNet18Stage4()), (torch.randn(1, 512, 7, 7),)


def _dcgan() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    m = DCGANGenerator()
    for p in m.modules():  # DCGAN's own init: conv weights N(0, 0.02)
        if isinstance(p, nn.ConvTranspose2d):
            nn.init.normal_(p.weight, 0.0, 0.02)
    return _prepare(m), (torch.randn(1, 100, 1, 1),)


def _infogan() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    return _prepare(InfoGANGenerator()), (torch.randn(1, 74),)


def _fsrcnn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(SEED)
    m = FSRCNN()
    with torch.no_grad():  # PReLU slopes differ per channel (default is a constant 0.25)
        for p in m.modules():
            if isinstance(p, nn.PReLU):
                p.weight.copy_(0.25 + 0.1 * torch.randn(p.num_parameters))
    return _prepare(m), (torch.rand(1, 1, 32, 32),)


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]] = {
    "resnet18_stage4": _resnet18_stage4,
    "dcgan": _dcgan,
    "infogan": _infogan,
    "fsrcnn": _fsrcnn,
}


# -- the check ---------------------------------------------------------------------------------


def op_counts(graph) -> Counter[str]:  # type: ignore[no-untyped-def]
    """How many nodes of each op ``graph`` has."""
    return Counter(n.op for n in graph.nodes)


def check_model(name: str) -> tuple[float, Counter[str]]:
    """Export ``name``, run it in the reference interpreter, compare with torch.

    Returns (max over outputs of max|tensoropt - torch| / max|torch|, op counts).
    """
    from tensoropt.frontends.torch import from_module

    from tensoropt.interp import run_graph

    module, inputs = MODELS[name]()
    with torch.no_grad():
        ref = module(*inputs)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    graph = from_module(module, inputs, name=name)
    feeds = {v.name: x.numpy() for v, x in zip(graph.inputs, inputs)}
    t0 = time.perf_counter()
    outs = run_graph(graph, feeds)
    secs = time.perf_counter() - t0
    worst = 0.0
    for out_name, r in zip(graph.outputs, refs):
        got, want = outs[out_name], r.numpy()
        if got.shape != want.shape:
            raise AssertionError(f"{name}: output {out_name} shape {got.shape}, torch {want.shape}")
        scale = max(float(np.abs(want).max()), 1e-30)
        worst = max(worst, float(np.abs(got.astype(np.float64) - want).max()) / scale)
    counts = op_counts(graph)
    shapes = ", ".join(f"{v.name}{list(v.type.shape)}" for v in graph.inputs)
    print(f"{name}: inputs {shapes}; {len(graph.nodes)} nodes; interp {secs * 1e3:.0f} ms; "
          f"max rel diff {worst:.2e}")
    print("    " + ", ".join(f"{op} x{c}" for op, c in sorted(counts.items())))
    return worst, counts


def check_band_reference() -> float:
    """Compare the vectorized band reference with a naive loop on a small case."""
    rng = np.random.default_rng(SEED)
    worst = 0.0
    for width, dilation in ((2, 1), (3, 2), (4, 5)):
        q, k, v = (rng.standard_normal((17, 8)).astype(np.float32) for _ in range(3))
        s, o = band_attention_reference(q, k, v, width, dilation)
        s0, o0 = _band_attention_naive(q, k, v, width, dilation)
        worst = max(worst, float(np.abs(s - s0).max() / np.abs(s0).max()),
                    float(np.abs(o - o0).max() / np.abs(o0).max()))
    # leading batch dims broadcast the same way
    qb, kb, vb = (rng.standard_normal((2, 3, 11, 4)).astype(np.float32) for _ in range(3))
    sb, ob = band_attention_reference(qb, kb, vb, 2, 2)
    s1, o1 = _band_attention_naive(qb[1, 2], kb[1, 2], vb[1, 2], 2, 2)
    worst = max(worst, float(np.abs(sb[1, 2] - s1).max()), float(np.abs(ob[1, 2] - o1).max()))
    print(f"band_attention_reference: max rel diff vs naive loop {worst:.2e}")
    return worst


def main() -> int:
    failed = []
    for name in MODELS:
        worst, _ = check_model(name)
        if not worst < TOLERANCE:
            failed.append(name)
    if not check_band_reference() < TOLERANCE:
        failed.append("band_attention_reference")
    if failed:
        print(f"FAILED (max rel diff >= {TOLERANCE:g}): {', '.join(failed)}")
        return 1
    print(f"all within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
