"""Instantiation: a derived expression -> a program of library ops and ``expr`` kernels.

Each nested scope becomes its own kernel (inner first); each kernel is matched
against library operators by its *iterator table* — which tensors each
iterator indexes — and emitted as that op, with transposes and reshapes around
it, or else as an ``expr`` node (an eOperator) that codegen compiles through
its generic lowering:

- matmul / batched matmul: a Sum scope over ``A * B``; traversal iterators in
  both are batch, only in A are rows (m), only in B are columns (n);
  summation iterators in both are the inner dim (k). An operand read through
  anything but a permutation of plain iterators is first *repaired*: copied
  by a layout kernel in the order the matmul wants (im2col is such a copy);
- conv2d: ``X[n, c, s*h + d*r + o, s*w + d*t + o'] * K[f..., c, r, t]`` with the
  pads from the traversal ranges; several filter iterators merge into one;
- g2bmm / gbmm: a band ``B[.., a*(i + D*w) + rest(batch), ..]`` against rows i
  (Longformer's banded products); batch iterators may split rows (dilation).

Weights-only kernels (a layout copy of a weight) are left for fold-constants.
Invariant: the program computes exactly what the expression denotes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from tensoropt.builder import GraphBuilder
from tensoropt.errors import TensoroptError
from tensoropt.ir.expr import Access, BinOp, Const, Expr, Iter, IterDef, Scope, free_iters, substitute_iters
from tensoropt.ir.graph import Graph
from tensoropt.ir.types import TensorType

from .affine import Affine, affine, bounds, scope_ranges, simplify_body
from .rules import factors
from .sites import map_scope_accesses


@dataclass
class _Ctx:
    b: GraphBuilder
    dtype: str
    shapes: dict[str, tuple[int, ...]]
    ops: list[str]


def _shape(ctx: _Ctx, name: str) -> tuple[int, ...]:
    return ctx.shapes[name]


def _add(ctx: _Ctx, op: str, *inputs: str, **attrs: object) -> str:
    out = ctx.b.op(op, *inputs, **attrs)
    ctx.shapes[out] = tuple(int(d) for d in ctx.b.type_of(out).shape)  # type: ignore[misc]
    if op == "conv2d":
        k = ctx.shapes[inputs[1]]
        dil = attrs.get("dilations", [1, 1])
        more = "" if list(dil) == [1, 1] else f" dilation {dil[0]}x{dil[1]}"  # type: ignore[call-overload]
        more += "" if attrs.get("strides", [1, 1]) == [1, 1] else " strided"
        ctx.ops.append(f"conv2d {k[2]}x{k[3]}{more}")
    elif op in ("g2bmm", "gbmm"):
        d = attrs.get("dilation", 1)
        ctx.ops.append(op if d == 1 else f"{op} dilation {d}")
    elif op not in ("reshape", "transpose"):
        ctx.ops.append(op)
    return out


def _expr(ctx: _Ctx, scope: Scope, role: str = "expr") -> str:
    out = ctx.b.expr(scope, ctx.dtype, name=role)
    ctx.shapes[out] = tuple(int(d) for d in scope.shape)  # type: ignore[misc]
    ctx.ops.append(role)
    return out


def _arrange(ctx: _Ctx, name: str, have: Sequence[str], want: Sequence[Sequence[str]]) -> str:
    """Transpose tensor ``name`` (dims named ``have``) to the flattened order of
    ``want`` and reshape to one dim per group of ``want``."""
    order = [n for g in want for n in g]
    perm = [list(have).index(n) for n in order]
    if perm != list(range(len(perm))):
        name = _add(ctx, "transpose", name, perm=perm)
    shape = _shape(ctx, name)
    sizes = dict(zip(order, shape))
    grouped = [math.prod(sizes[n] for n in g) for g in want]
    if list(grouped) != list(shape):
        name = _add(ctx, "reshape", name, shape=grouped)
    return name


def _plain(acc: Access, ctx: _Ctx, ranges: Mapping[str, tuple[int, int]]) -> list[str] | None:
    """Iterator names of an access whose indices are distinct plain iterators
    covering each dim exactly; None otherwise."""
    assert isinstance(acc.source, str)
    dims = _shape(ctx, acc.source)
    names = []
    for i, d in zip(acc.indices, dims):
        if not isinstance(i, Iter) or i.name in names or ranges.get(i.name) != (0, d - 1):
            return None
        names.append(i.name)
    return names if acc.pad == 0.0 else None


class NoMatch(Exception):
    """A matcher cannot express the scope as its operator (the next one is tried)."""


def _operand(ctx: _Ctx, acc: Access, s: Scope, want: Sequence[Sequence[str]]) -> str:
    """The tensor read by ``acc`` laid out as ``want`` (groups of iterators)."""
    ranges = scope_ranges(s)
    have = _plain(acc, ctx, ranges)
    order = [n for g in want for n in g]
    if not free_iters(Scope((), (), acc)) <= set(order):
        raise NoMatch("the operand reads an iterator the operator does not index it by")
    if have is not None and sorted(have) == sorted(order):
        return _arrange(ctx, acc.source, have, want)  # type: ignore[arg-type]
    # repair: a layout kernel copies the read in the wanted order
    defs = {d.name: d for d in s.travs + s.sums}
    travs = tuple(IterDef(n, defs[n].extent) for n in order)
    copy = _expr(ctx, Scope(travs, (), acc), "layout")
    return _arrange(ctx, copy, order, want)


def _contraction(s: Scope) -> tuple[Access, Access] | None:
    if s.reduce != "Sum" or not s.sums:
        return None
    masks, terms = factors(s.body)
    if masks or len(terms) != 2 or not all(isinstance(t, Access) and isinstance(t.source, str) and t.pad == 0.0
                                           for t in terms):
        return None  # operators read zero outside their operands: only pad-0 reads map onto them
    return terms[0], terms[1]  # type: ignore[return-value]


def _starts_zero(s: Scope) -> bool:
    return all(d.start == 0 and isinstance(d.extent, int) for d in s.travs + s.sums)


def match_matmul(ctx: _Ctx, s: Scope) -> str | None:
    pair = _contraction(s)
    if pair is None or not _starts_zero(s):
        return None
    a, b = pair
    ia, ib = free_iters(Scope((), (), a)), free_iters(Scope((), (), b))
    travs = [d.name for d in s.travs]
    sums = [d.name for d in s.sums]
    if not all(k in ia and k in ib for k in sums) or not all(t in ia or t in ib for t in travs):
        return None
    batch = [t for t in travs if t in ia and t in ib]
    m = [t for t in travs if t in ia and t not in ib]
    n = [t for t in travs if t in ib and t not in ia]
    ga = _operand(ctx, a, s, [batch, m, sums])
    gb = _operand(ctx, b, s, [batch, sums, n])
    y = _add(ctx, "matmul", ga, gb)
    ext = {d.name: int(d.extent) for d in s.travs}  # type: ignore[arg-type]
    y = _arrange_split(ctx, y, batch + m + n, {}, ext)
    return _arrange(ctx, y, batch + m + n, [[t] for t in travs])


def _spatial(e: Expr, travs: set[str], sums: set[str]) -> tuple[str, int, str, int, int] | None:
    """``s*h + d*r + o`` -> (h, s, r, d, o) with h a traversal and r a summation iterator."""
    a = affine(e)
    if a is None or len(a.terms) != 2:
        return None
    (n1, c1), (n2, c2) = a.terms
    if n1 in sums:
        (n1, c1), (n2, c2) = (n2, c2), (n1, c1)
    if n1 in travs and n2 in sums and c1 > 0 and c2 > 0:
        return n1, c1, n2, c2, a.const
    return None


def match_conv(ctx: _Ctx, s: Scope) -> str | None:
    pair = _contraction(s)
    if pair is None or not _starts_zero(s):
        return None
    travs = {d.name for d in s.travs}
    sums = {d.name for d in s.sums}
    ext = {d.name: int(d.extent) for d in s.travs + s.sums}  # type: ignore[arg-type]
    for x, k in (pair, pair[::-1]):
        assert isinstance(x.source, str)
        if len(x.indices) != 4 or x.pad != 0.0:
            continue
        n_e, c_e = x.indices[:2]
        sp = [_spatial(i, travs, sums) for i in x.indices[2:]]
        if not (isinstance(n_e, Iter) and n_e.name in travs and isinstance(c_e, Iter) and c_e.name in sums):
            continue
        if None in sp:
            continue
        (h, sh, r, dh, oh), (w, sw, t, dw, ow) = sp  # type: ignore[misc]
        if len({c_e.name, r, t}) != 3 or {c_e.name, r, t} != sums:
            continue  # conv2d sums over exactly channels and the two taps
        ik = free_iters(Scope((), (), k))
        if n_e.name in ik or not {c_e.name, r, t} <= ik or (ik - {c_e.name, r, t}) & sums:
            continue
        filters = [d.name for d in s.travs if d.name in ik]
        if {n_e.name, h, w, *filters} != travs or len(travs) != 3 + len(filters) or not filters:
            continue
        H, W = _shape(ctx, x.source)[2:]
        pads = []
        for out, st, tap, dil, off, size in ((h, sh, r, dh, oh, H), (w, sw, t, dw, ow, W)):
            top = -off
            bottom = (ext[out] - 1) * st + dil * (ext[tap] - 1) + 1 - size - top
            pads.append((top, bottom))
        if min(min(p) for p in pads) < 0 or _shape(ctx, x.source)[1] != ext[c_e.name] \
                or _shape(ctx, x.source)[0] != ext[n_e.name]:
            continue
        kern = _operand(ctx, k, s, [filters, [c_e.name], [r], [t]])
        y = _add(ctx, "conv2d", x.source, kern, strides=[sh, sw], dilations=[dh, dw],
                 pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]])
        outs = [n_e.name, "_f", h, w]
        y = _arrange_split(ctx, y, outs, {"_f": filters}, ext)
        return _arrange(ctx, y, _flat(outs, {"_f": filters}), [[d.name] for d in s.travs])
    return None


def _flat(names: list[str], groups: Mapping[str, list[str]]) -> list[str]:
    return [m for n in names for m in groups.get(n, [n])]


def _arrange_split(ctx: _Ctx, y: str, names: list[str], groups: Mapping[str, list[str]],
                   ext: Mapping[str, int]) -> str:
    """Reshape merged dims (``groups``) of ``y`` back into their iterators."""
    flat = _flat(names, groups)
    shape = [ext[n] for n in flat]
    return y if list(_shape(ctx, y)) == shape else _add(ctx, "reshape", y, shape=shape)


def match_band(ctx: _Ctx, s: Scope) -> str | None:
    """g2bmm (band over a traversal iterator) or gbmm (band over the summation)."""
    pair = _contraction(s)
    if pair is None or not _starts_zero(s):
        return None
    ranges = scope_ranges(s)
    ext = {d.name: int(d.extent) for d in s.travs + s.sums}  # type: ignore[arg-type]
    travs = [d.name for d in s.travs]
    sums = [d.name for d in s.sums]
    for a, b in (pair, pair[::-1]):
        got = _band(ctx, s, a, b, travs, sums, ranges, ext)
        if got is not None:
            return got
    return None


def _band(ctx: _Ctx, s: Scope, a: Access, b: Access, travs: list[str], sums: list[str],
          ranges: Mapping[str, tuple[int, int]], ext: Mapping[str, int]) -> str | None:
    assert isinstance(b.source, str)
    ia = free_iters(Scope((), (), a))
    bdims = _shape(ctx, b.source)
    # the band index of B: the only index using two of (row i, band w)
    for kdim, e in enumerate(b.indices):
        af = affine(e)
        if af is None or len(af.terms) < 2:
            continue
        for i, ci in af.terms:
            for w, cw in af.terms:
                if i == w or i not in travs or ci <= 0 or cw % ci or cw <= 0 or i not in ia or w in (
                        free_iters(Scope((), (), Access("_", b.indices[:kdim] + b.indices[kdim + 1:])))):
                    continue
                dil = cw // ci
                width2 = ext[w]
                if width2 % 2 == 0:
                    continue
                W = width2 // 2
                rest = af.drop(i).drop(w)
                # x = i + dil*w - dil*W; B row = ci*x + rest', rest' = rest + ci*dil*W
                restp = Affine(rest.terms, rest.const + ci * dil * W)
                g2 = w in travs and w not in ia and len(sums) >= 1
                gb = w in sums and w in ia
                if not (g2 or gb):
                    continue
                batch = [t for t in travs if t not in (i, w) and t in ia and t in free_iters(Scope((), (), b))]
                if any(n not in batch for n, _ in restp.terms):
                    continue
                lim = bounds(restp, ranges)
                if lim is None:
                    continue
                M = ext[i]
                # B' covers x in [0, M): reads outside must be out of B's bounds
                if not (lim[1] - ci < 0 and ci * M + lim[0] >= bdims[kdim]):
                    continue
                x = "_x"
                brow = restp + Affine.of({x: ci})
                bread = Access(b.source, b.indices[:kdim] + (brow.expr(),) + b.indices[kdim + 1:])
                inner = [n for n in sums if n != w] if g2 else [t for t in travs if t not in batch + [i]]
                if gb and (any(n in ia for n in inner) or sums != [w]):
                    continue  # gbmm sums over the band only
                if g2 and not all(n in ia for n in inner):
                    continue
                defs = {d.name: d for d in s.travs + s.sums}
                bnames = batch + [x] + inner
                bscope = Scope(tuple(IterDef(n, M if n == x else defs[n].extent) for n in bnames), (), bread)
                if free_iters(bscope):
                    continue
                bt = _operand(ctx, bread, bscope, [batch, [x], inner])
                if g2:
                    at = _operand(ctx, a, s, [batch, [i], inner])
                    y = _add(ctx, "g2bmm", at, bt, width=W, dilation=dil)
                    outs = batch + [i, w]
                else:
                    at = _operand(ctx, a, s, [batch, [i], [w]])
                    y = _add(ctx, "gbmm", at, bt, width=W, dilation=dil)
                    outs = batch + [i] + inner
                y = _arrange_split(ctx, y, ["_b"] + outs[len(batch):], {"_b": batch}, ext)
                return _arrange(ctx, y, outs, [[t] for t in travs])
    return None


#: rough rates for pruning only (measured times decide): library kernels,
#: generated kernels, memory traffic. Their ratio is what matters.
LIBRARY_FLOPS = 100e9
GENERATED_FLOPS = 5e9
BYTES_PER_S = 10e9
LIBRARY = {"matmul", "conv2d", "g2bmm", "gbmm", "batch_matmul"}


def program_estimate(g: Graph, weights: Mapping[str, np.ndarray]) -> float:
    """Static time estimate (seconds) of a program; weights-only nodes are free (folded)."""
    from tensoropt.ir.cost import expr_flops
    from tensoropt.ops import REGISTRY
    from tensoropt.ops.common import io_bytes

    types = {k: v.type for k, v in g.values().items()}
    folded = set(weights)
    total = 0.0
    for n in g.nodes:
        ins, outs = [types[i] for i in n.inputs], [o.type for o in n.outputs]
        if all(i in folded for i in n.inputs):
            folded.update(n.output_names)  # weights only: fold-constants computes it once
            continue
        if n.expr is not None:
            total += expr_flops(n.expr) / GENERATED_FLOPS + io_bytes(ins, outs) / BYTES_PER_S
            continue
        rules = REGISTRY[n.op]
        c = rules.cost(ins, outs, rules.with_defaults(n.attrs))
        rate = LIBRARY_FLOPS if n.op in LIBRARY else GENERATED_FLOPS
        total += c.flops / rate + (0 if n.op == "reshape" else c.bytes / BYTES_PER_S)
    return total


MATCHERS = (match_conv, match_band, match_matmul)


def merge_root(root: Scope) -> Scope:
    """Fuse a root that only gathers from one nested scope into that scope.

    ``L[o] { (L[t] R[r] {g})[idx] }`` -> ``L[o] R[r] { g[t := idx + start] }`` when
    ``idx`` is provably inside the nested scope: the gather then costs no kernel.
    """
    if root.sums or not isinstance(root.body, Access) or not isinstance(root.body.source, Scope):
        return root
    acc, inner = root.body, root.body.source
    if acc.pad != 0.0 or not all(isinstance(d.extent, int) for d in inner.travs):
        return root
    ranges = scope_ranges(root)
    for i, d in zip(acc.indices, inner.travs):
        a = affine(i)
        b = bounds(a, ranges) if a is not None else _divmod_bounds(i, ranges)
        if b is None or b[0] < 0 or b[1] > int(d.extent) - 1:  # type: ignore[call-overload]
            return root
    taken = {d.name for d in root.travs}
    ren = {d.name: f"{d.name}_{k}" for k, d in enumerate(inner.sums)}
    for k, v in list(ren.items()):
        while v in taken:
            v += "_"
        ren[k] = v
        taken.add(v)
    mapping: dict[str, Expr] = {d.name: i + d.start for i, d in zip(acc.indices, inner.travs)}
    mapping.update({k: Iter(v) for k, v in ren.items()})
    sums = tuple(IterDef(ren[d.name], d.extent, d.start) for d in inner.sums)
    body = simplify_body(substitute_iters(inner.body, mapping), {**ranges, **{
        ren[d.name]: (d.start, d.start + int(d.extent) - 1) for d in inner.sums}})  # type: ignore[call-overload]
    return Scope(root.travs, sums, body, inner.reduce)


def _divmod_bounds(e: Expr, ranges: Mapping[str, tuple[int, int]]) -> tuple[int, int] | None:
    if isinstance(e, BinOp) and e.op in ("//", "%") and isinstance(e.rhs, Const) and isinstance(e.rhs.value, int):
        a = affine(e.lhs)
        b = bounds(a, ranges) if a is not None else None
        if b is None:
            return None
        p = e.rhs.value
        if e.op == "//":
            return b[0] // p, b[1] // p
        return (0, p - 1) if b[1] - b[0] >= p - 1 or b[0] // p != b[1] // p else (b[0] % p, b[1] % p)
    a = affine(e)
    return bounds(a, ranges) if a is not None else None


def _emit(ctx: _Ctx, s: Scope, name: str | None, library: bool) -> str:
    """Emit ``s`` (nested scopes first) and return its tensor's name."""
    def visit(a: Access, ranges: object) -> Expr | None:
        assert isinstance(a.source, Scope)
        return Access(_emit(ctx, a.source, None, library), a.indices, a.pad)

    body = map_scope_accesses(s.body, scope_ranges(s), visit)  # type: ignore[arg-type]
    flat = Scope(s.travs, s.sums, body, s.reduce)
    if library:
        for m in MATCHERS:
            mark, omark = len(ctx.b), len(ctx.ops)
            try:
                out = m(ctx, flat)
            except (NoMatch, TensoroptError):  # an op the matcher cannot build: next matcher
                out = None
            if out is not None:
                return out
            while len(ctx.b) > mark:
                ctx.b.undo()
            del ctx.ops[omark:]
    return _expr(ctx, flat, "eop")


def instantiate(root: Scope, values: Mapping[str, TensorType], weights: Mapping[str, np.ndarray],
                *, library: bool = True, name: str = "derived") -> tuple[Graph, list[str]]:
    """The program of ``root`` as a graph (inputs: non-weight values; consts: ``weights``)
    and the list of its kernels' kinds (library op names, ``layout``, ``eop``)."""
    g, kinds, _ = instantiate_estimated(root, values, weights, library=library, name=name)
    return g, kinds


def instantiate_estimated(root: Scope, values: Mapping[str, TensorType], weights: Mapping[str, np.ndarray],
                          *, library: bool = True, name: str = "derived") -> tuple[Graph, list[str], float]:
    """:func:`instantiate` plus the program's :func:`program_estimate`.

    A root that only gathers from a nested scope may be fused into it
    (:func:`merge_root`); both programs are built and the one with the lower
    estimate is kept (fusing saves the gather but can turn a library op the
    nested scope matches into a generated kernel).
    """
    merged = merge_root(root)
    options = [root] if merged is root else [merged, root]  # a tie keeps the fused one
    best: tuple[Graph, list[str], float] | None = None
    for r in options:
        g, kinds = _instantiate(r, values, weights, library, name)
        cost = program_estimate(g, weights)
        if best is None or cost < best[2]:
            best = (g, kinds, cost)
    assert best is not None
    return best


def _instantiate(root: Scope, values: Mapping[str, TensorType], weights: Mapping[str, np.ndarray],
                 library: bool, name: str) -> tuple[Graph, list[str]]:
    b = GraphBuilder(name)
    dtype = "f32"
    shapes: dict[str, tuple[int, ...]] = {}
    for n, t in values.items():
        dtype = t.dtype
        if n in weights:
            b.const(n, weights[n])
        else:
            b.input(n, t.dtype, t.shape)
        shapes[n] = tuple(int(d) for d in t.shape)  # type: ignore[misc]
    ctx = _Ctx(b, dtype, shapes, [])
    out = _emit(ctx, root, None, library)
    return b.build(out), ctx.ops


def describe(ops: list[str]) -> str:
    """``matmul + eop`` style summary of a program's kernels."""
    return " + ".join(ops) if ops else "(no kernels)"
