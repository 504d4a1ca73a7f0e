"""Einsum strings as sugar for scopes: ``einsum_to_expr("bik,bkj->bij", ...)``.

NumPy's rules, restated as invariants of the result:

- Each letter (``a-z``, ``A-Z``) is one iterator, named by the letter.
  Letters in the output are traversal iterators, in output order; the others
  are summed, in order of first appearance.
- Without ``->`` the output is ``...`` (when any operand has one) followed by
  the letters that appear exactly once, sorted by code point (``B`` before
  ``a``), as in NumPy.
- ``...`` stands for an operand's leading-to-trailing unlabelled dims. The
  ellipsis dims of all operands are right-aligned and broadcast; they become
  iterators ``e0, e1, ...`` (left to right). An explicit output must contain
  ``...`` when the ellipsis covers any dim.
- A dim of size 1 broadcasts against a larger one (for a letter as for an
  ellipsis dim): its access index is then the constant ``0``.
- A letter repeated within one operand reads a diagonal (``ii->i``); those
  dims must be equal.
- The body is the product of one access per operand, in operand order.

Any violation raises :class:`~tensoropt.errors.VerifyError`.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import VerifyError
from .expr import Access, BinOp, Const, Expr, Iter, IterDef, Scope
from .types import Dim

__all__ = ["einsum_to_expr"]

_ELLIPSIS = "..."


def _parse_term(text: str, what: str) -> tuple[str, str, bool]:
    """Split one subscript term into ``(before, after, has_ellipsis)``."""
    count = text.count(_ELLIPSIS)
    if count > 1 or "." in text.replace(_ELLIPSIS, ""):
        raise VerifyError(f"einsum {what} {text!r}: '.' may only appear as one '...'")
    before, _, after = text.partition(_ELLIPSIS) if count else (text, "", "")
    for ch in before + after:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z"):
            raise VerifyError(f"einsum {what} {text!r}: bad subscript {ch!r} (want letters a-z, A-Z)")
    return before, after, bool(count)


def _split_spec(spec: str, n_operands: int) -> tuple[list[tuple[str, str, bool]], tuple[str, str, bool] | None]:
    """Parse ``spec`` into operand terms and the explicit output term (or None)."""
    s = spec.replace(" ", "")
    if s.count("->") > 1:
        raise VerifyError(f"einsum spec {spec!r}: more than one '->'")
    lhs, arrow, rhs = s.partition("->")
    if "-" in lhs or ">" in lhs or "-" in rhs or ">" in rhs:
        raise VerifyError(f"einsum spec {spec!r}: stray '-' or '>'")
    texts = lhs.split(",")
    if len(texts) != n_operands:
        raise VerifyError(f"einsum spec {spec!r} has {len(texts)} operand term(s) but {n_operands} operand(s) were given")
    terms = [_parse_term(t, f"operand {k} term") for k, t in enumerate(texts)]
    out = _parse_term(rhs, "output") if arrow else None
    if out is not None:
        letters = out[0] + out[1]
        dup = sorted({ch for ch in letters if letters.count(ch) > 1})
        if dup:
            raise VerifyError(f"einsum spec {spec!r}: output repeats {dup[0]!r}")
    return terms, out


def _broadcast(sizes: list[tuple[Dim, str]], what: str) -> Dim:
    """NumPy broadcast of one dim's sizes; ``sizes`` are ``(size, who)`` pairs.

    Size 1 yields to anything; otherwise all sizes (ints or symbols) must be equal.
    """
    result: Dim = 1
    first = ""
    for size, who in sizes:
        if size == 1:
            continue
        if result == 1:
            result, first = size, who
        elif size != result:
            raise VerifyError(f"einsum: {what} has size {result} in {first} but {size} in {who}")
    return result


def einsum_to_expr(spec: str, operands: Sequence[tuple[str, Sequence[Dim]]]) -> Scope:
    """The scope computing ``numpy.einsum(spec, *arrays)`` over named tensors.

    ``operands`` are ``(tensor name, shape)`` pairs, one per operand term; the
    scope reads ``%name[...]``. See the module docstring for the rules.
    """
    if not operands:
        raise VerifyError("einsum needs at least one operand")
    terms, out = _split_spec(spec, len(operands))
    shapes = [tuple(shape) for _, shape in operands]

    # Ellipsis dims per operand, then their broadcast rank.
    ell_dims: list[int] = []
    for k, ((before, after, has_ell), shape) in enumerate(zip(terms, shapes)):
        n_letters = len(before) + len(after)
        if not has_ell and len(shape) != n_letters:
            raise VerifyError(
                f"einsum operand {k} (%{operands[k][0]}): term {before!r} has {n_letters} "
                f"subscript(s) but the operand has rank {len(shape)} (shape {list(shape)})"
            )
        if has_ell and len(shape) < n_letters:
            raise VerifyError(
                f"einsum operand {k} (%{operands[k][0]}): term {before}...{after} needs rank >= "
                f"{n_letters}, got rank {len(shape)} (shape {list(shape)})"
            )
        ell_dims.append(len(shape) - n_letters if has_ell else 0)
    ell_rank = max(ell_dims)

    # Label of every dim of every operand.
    labels: list[list[str]] = []
    for (before, after, _), n in zip(terms, ell_dims):
        ell = [f"e{ell_rank - n + j}" for j in range(n)]
        labels.append(list(before) + ell + list(after))

    # Extent of every label (broadcast across operands; equal within one).
    sizes: dict[str, list[tuple[Dim, str]]] = {}
    order: list[str] = []
    for k, (labs, shape) in enumerate(zip(labels, shapes)):
        within: dict[str, Dim] = {}
        for lab, d in zip(labs, shape):
            if lab in within and within[lab] != d:
                raise VerifyError(
                    f"einsum operand {k} (%{operands[k][0]}): repeated subscript {lab!r} "
                    f"spans dims of different sizes ({within[lab]} != {d})"
                )
            within[lab] = d
            if lab not in sizes:
                order.append(lab)
            sizes.setdefault(lab, []).append((d, f"operand {k} (%{operands[k][0]})"))
    extent = {lab: _broadcast(sizes[lab], f"subscript {lab!r}") for lab in order}

    ell_labels = [f"e{j}" for j in range(ell_rank)]
    out_labels = _output_labels(spec, terms, out, ell_labels)
    missing = [lab for lab in out_labels if lab not in extent]
    if missing:
        raise VerifyError(f"einsum spec {spec!r}: output subscript {missing[0]!r} appears in no operand")

    travs = tuple(IterDef(lab, extent[lab]) for lab in out_labels)
    sums = tuple(IterDef(lab, extent[lab]) for lab in order if lab not in out_labels)
    body: Expr | None = None
    for (name, _), labs, shape in zip(operands, labels, shapes):
        idx = tuple(_index(lab, d, extent[lab]) for lab, d in zip(labs, shape))
        acc = Access(name, idx)
        body = acc if body is None else BinOp("*", body, acc)
    assert body is not None
    return Scope(travs, sums, body, "Sum")


def _index(label: str, size: Dim, extent: Dim) -> Expr:
    """The index of a dim: its iterator, or 0 where a size-1 dim broadcasts."""
    return Const(0) if size == 1 and extent != 1 else Iter(label)


def _output_labels(
    spec: str,
    terms: Sequence[tuple[str, str, bool]],
    out: tuple[str, str, bool] | None,
    ell_labels: list[str],
) -> list[str]:
    """Output labels in order: explicit, or NumPy's implicit rule."""
    if out is None:
        letters = "".join(b + a for b, a, _ in terms)
        once = sorted(ch for ch in set(letters) if letters.count(ch) == 1)
        return ell_labels + once
    before, after, has_ell = out
    if ell_labels and not has_ell:
        raise VerifyError(
            f"einsum spec {spec!r}: the operands' '...' covers {len(ell_labels)} dim(s) "
            "but the output has no '...'"
        )
    return list(before) + ell_labels + list(after)
