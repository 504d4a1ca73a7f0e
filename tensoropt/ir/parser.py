"""Parser for the IR text format (docs/ir.md).

- ``parse_graph(text)`` reads a whole ``graph ... { ... }``; ``parse_expr(text)``
  reads one scope ``L[...] ... { ... }``.
- Every error is a :class:`~tensoropt.errors.ParseError` whose message is one
  line, ``FILE:LINE:COL: what; expected one of: ...`` (LINE and COL 1-based).
- Parsing builds IR objects directly (lark calls the callbacks below while it
  parses, no tree is kept). Int literals become ``int``, literals with a ``.``,
  an exponent, ``inf`` or ``nan`` become ``float``. Parsed graphs carry no
  weights (see :mod:`tensoropt.ir.io` for that).
- The grammar lives in ``grammar.lark``; the LALR tables are built once, on
  first use, and shared.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, NoReturn

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import ParseError
from .expr import FUNCTIONS, Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope
from .graph import Attrs, AttrValue, Graph, Node, Value
from .types import DTYPES, Dim, TensorType

__all__ = ["parse_graph", "parse_expr"]


class _Located(Exception):
    """A semantic error found by a callback; ``parse_*`` adds the file name."""

    def __init__(self, msg: str, line: int, col: int) -> None:
        super().__init__(msg)
        self.msg, self.line, self.col = msg, line, col


def _fail(tok: Token, msg: str) -> NoReturn:
    raise _Located(msg, tok.line or 0, tok.column or 0)


_ESCAPE = re.compile(r'\\(["\\])')


def _unquote(quoted: str) -> str:
    """``"a\\"b"`` -> ``a"b``. The lexer only admits ``\\"`` and ``\\\\``."""
    return _ESCAPE.sub(r"\1", quoted[1:-1])


class _Builder(Transformer):
    """Callbacks named after the grammar's rules and aliases.

    Stateless, so one instance serves every parse. Names come back as plain
    ``str`` (never lark ``Token``), so IR objects hold only builtin types.
    """

    # -- entry points ------------------------------------------------------
    def start(self, c: list[Any]) -> Graph:
        return c[0]

    def expr_start(self, c: list[Any]) -> Scope:
        return c[0]

    # -- graphs ------------------------------------------------------------
    def graph(self, c: list[Any]) -> Graph:
        name, inputs, *stmts, outputs = c
        consts = tuple(s for s in stmts if isinstance(s, Value))
        located = [s for s in stmts if isinstance(s, tuple)]
        nodes = tuple(n for n, _ in located)
        # line:col of each node, keyed by its first output; parse_graph adds the file
        where = {n.outputs[0].name: pos for n, pos in located if n.outputs}
        return Graph(str(name), tuple(inputs or ()), consts, nodes, tuple(outputs), locations=where)

    def const(self, c: list[Any]) -> Value:
        return c[0]

    def node(self, c: list[Any]) -> tuple[Node, str]:
        outs, op, ins, scope, attrs = c
        # the op name's token carries the node's position
        pos = f"{op.line}:{op.column}" if isinstance(op, Token) else "?"
        return Node(str(op), tuple(ins or ()), tuple(outs), attrs or Attrs(), scope), pos

    def ret(self, c: list[Any]) -> tuple[str, ...]:
        return tuple(c[0] or ())

    def values(self, c: list[Any]) -> list[Value]:
        return c

    def value(self, c: list[Any]) -> Value:
        return Value(c[0], c[1])

    def type(self, c: list[Any]) -> TensorType:
        dtype, dims = c
        if dtype not in DTYPES:
            _fail(dtype, f"unknown dtype '{dtype}'; expected one of: {', '.join(DTYPES)}")
        return TensorType(str(dtype), tuple(dims or ()))

    def dims(self, c: list[Any]) -> list[Dim]:
        return c

    def dim_int(self, c: list[Any]) -> int:
        return int(c[0])

    def dim_sym(self, c: list[Any]) -> str:
        return str(c[0])

    def tensors(self, c: list[Any]) -> list[str]:
        return c

    def bare_tensor(self, c: list[Any]) -> str:
        return str(c[0])[1:]

    def quoted_tensor(self, c: list[Any]) -> str:
        return _unquote(str(c[0])[1:])

    def bare_name(self, c: list[Any]) -> Token:
        return c[0]

    def quoted_name(self, c: list[Any]) -> Token:
        # keep the token (for error positions) but with the unescaped text
        tok: Token = c[0]
        return tok.update(value=_unquote(str(tok)))

    def attrs(self, c: list[Any]) -> Attrs:
        if c == [None]:  # `{}`
            return Attrs()
        seen: dict[str, AttrValue] = {}
        for key, val in c:
            if key in seen:
                _fail(key, f"duplicate attribute '{key}'")
            seen[str(key)] = val
        return Attrs(seen)

    def attr(self, c: list[Any]) -> tuple[Token, AttrValue]:
        return (c[0], c[1])

    def attr_list(self, c: list[Any]) -> tuple[AttrValue, ...]:
        return () if c == [None] else tuple(c)

    def string(self, c: list[Any]) -> str:
        return _unquote(str(c[0]))

    def true(self, c: list[Any]) -> bool:
        return True

    def false(self, c: list[Any]) -> bool:
        return False

    # -- scopes ------------------------------------------------------------
    def scope(self, c: list[Any]) -> Scope:
        travs, red, body = c
        reduce, sums = red if red is not None else ("Sum", ())
        return Scope(tuple(travs or ()), tuple(sums), body, reduce)

    def reduction(self, c: list[Any]) -> tuple[str, tuple[IterDef, ...]]:
        return (c[0], tuple(c[1] or ()))

    def reducer(self, c: list[Any]) -> str:
        return str(c[0])

    def iterdefs(self, c: list[Any]) -> list[IterDef]:
        return c

    def iter_int(self, c: list[Any]) -> IterDef:
        return IterDef(str(c[0]), int(c[1]))

    def iter_sym(self, c: list[Any]) -> IterDef:
        return IterDef(str(c[0]), str(c[1]))

    def iter_range(self, c: list[Any]) -> IterDef:
        name, start, stop = c
        if stop < start:
            _fail(name, f"bad iterator range '{name}:{start}..{stop}': stop must be >= start")
        return IterDef(str(name), stop - start, start)

    def pos_int(self, c: list[Any]) -> int:
        return int(c[0])

    def neg_int(self, c: list[Any]) -> int:
        return -int(c[0])

    # -- bodies ------------------------------------------------------------
    def add(self, c: list[Any]) -> BinOp:
        return BinOp("+", c[0], c[1])

    def sub(self, c: list[Any]) -> BinOp:
        return BinOp("-", c[0], c[1])

    def mul(self, c: list[Any]) -> BinOp:
        return BinOp("*", c[0], c[1])

    def div(self, c: list[Any]) -> BinOp:
        return BinOp("/", c[0], c[1])

    def floordiv(self, c: list[Any]) -> BinOp:
        return BinOp("//", c[0], c[1])

    def mod(self, c: list[Any]) -> BinOp:
        return BinOp("%", c[0], c[1])

    def neg(self, c: list[Any]) -> Expr:
        # `-3` is the literal -3; `-x` is neg(x) (what the printer writes)
        x = c[0]
        if isinstance(x, Const):
            return Const(-x.value)
        return Call("neg", (x,))

    def number(self, c: list[Any]) -> Const:
        return Const(c[0])

    def iter(self, c: list[Any]) -> Iter:
        return Iter(str(c[0]))

    def call(self, c: list[Any]) -> Call:
        fn, args = c
        args = tuple(args or ())
        if fn not in FUNCTIONS:
            names = ", ".join(sorted(FUNCTIONS))
            _fail(fn, f"unknown function '{fn}'; expected one of: {names}")
        want = FUNCTIONS[fn]
        if len(args) != want:
            plural = "" if want == 1 else "s"
            _fail(fn, f"function '{fn}' takes {want} argument{plural}, got {len(args)}")
        return Call(str(fn), args)

    def access(self, c: list[Any]) -> Access:
        src, idx, pad = c
        return Access(src, tuple(idx or ()), 0.0 if pad is None else pad)

    def scope_access(self, c: list[Any]) -> Access:
        return self.access(c)

    def args(self, c: list[Any]) -> list[Expr]:
        return c

    def pad(self, c: list[Any]) -> float:
        return float(c[0])

    # -- numbers -----------------------------------------------------------
    def snum(self, c: list[Any]) -> int | float:
        return c[0]

    def neg_num(self, c: list[Any]) -> int | float:
        return -c[0]

    def int_lit(self, c: list[Any]) -> int:
        return int(c[0])

    def float_lit(self, c: list[Any]) -> float:
        return float(c[0])

    def inf_lit(self, c: list[Any]) -> float:
        return float("inf")

    def nan_lit(self, c: list[Any]) -> float:
        return float("nan")


_GRAMMAR = Path(__file__).with_name("grammar.lark")
_PARSER: Any = None


def _parser() -> Any:
    """The shared LALR parser, built on first use (table construction is slow)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = Lark(
            _GRAMMAR.read_text(encoding="utf-8"),
            parser="lalr",
            lexer="contextual",
            start=["start", "expr_start"],
            transformer=_Builder(),
            maybe_placeholders=True,
        )
    return _PARSER


# ---------------------------------------------------------------- errors

#: how named terminals are shown in "expected one of" lists
_FRIENDLY = {
    "IDENT": "identifier",
    "INT": "number",
    "FLOAT": "number",
    "TNAME": "tensor name",
    "QTNAME": "tensor name",
    "STRING": "string",
    "$END": "end of input",
    "INF": "number",
    "NAN": "number",
}


def _terminal_label(name: str) -> str:
    """``RSQB`` -> ``']'``, ``IDENT`` -> ``identifier``."""
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    try:
        term = _parser().get_terminal(name)
    except KeyError:
        return name
    if term.pattern.type == "str":
        return f"'{term.pattern.value}'"
    return name.lower()


def _expected(names: Iterable[str]) -> str:
    labels = sorted({_terminal_label(n) for n in names})
    return ", ".join(labels)


def _shown(text: str) -> str:
    """A token as quoted in a one-line message."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= 40 else text[:37] + "..."


def _end_position(text: str) -> tuple[int, int]:
    """Line and column just past the last character."""
    return text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1


def _accepted_at(text: str, start: str, bad_pos: int | None) -> set[str]:
    """Terminals the parser accepts just before offset ``bad_pos`` (None: at the end).

    Lark reports the expected set of the state it failed in, after LALR
    default reductions have already run, which drops valid continuations
    (``*`` after ``%x[i``) and keeps merged-lookahead ones that are invalid
    (``)`` there). Replaying the parse up to the bad token and asking the
    interactive parser what it accepts gives the exact set; this only runs
    on the error path.
    """
    ip = _parser().parse_interactive(text, start=start)
    try:
        for tok in ip.iter_parse():  # yields each token before feeding it
            if bad_pos is not None and tok.start_pos is not None and tok.start_pos >= bad_pos:
                break
    except (UnexpectedInput, _Located):
        pass  # the lexer stopped at the bad spot; ``ip`` holds the state before it
    return set(ip.accepts())


def _syntax_error(err: UnexpectedInput, text: str, filename: str, start: str) -> ParseError:
    """Translate a lark error into a one-line, located ParseError."""
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        line, col, pos = err.line, err.column, err.token.start_pos
        what = f"'{_shown(str(err.token))}'"
        fallback: Iterable[str] = err.expected
    elif isinstance(err, UnexpectedCharacters):
        line, col, pos = err.line, err.column, int(err.pos_in_stream or 0)
        what = f"'{_shown(text[pos:pos + 1])}'"
        fallback = err.allowed or ()
    else:  # end of input (UnexpectedToken on $END, or UnexpectedEOF)
        (line, col), pos = _end_position(text), None
        what = "end of input"
        fallback = getattr(err, "expected", ())
    expected = _expected(_accepted_at(text, start, pos) or fallback)
    msg = f"{filename}:{line}:{col}: unexpected {what}"
    if expected:
        msg += f"; expected one of: {expected}"
    return ParseError(msg)


def _run(text: str, filename: str, start: str) -> Any:
    try:
        return _parser().parse(text, start=start)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, filename, start) from None
    except _Located as e:
        raise ParseError(f"{filename}:{e.line}:{e.col}: {e.msg}") from None
    except VisitError as e:  # defensive: some lark paths wrap callback errors
        if isinstance(e.orig_exc, _Located):
            o = e.orig_exc
            raise ParseError(f"{filename}:{o.line}:{o.col}: {o.msg}") from None
        raise


def parse_graph(text: str, filename: str = "<string>") -> Graph:
    """Parse a graph in the text format; raises ParseError (one line, located)."""
    g = _run(text, filename, "start")
    assert isinstance(g, Graph)
    return g.replace(locations={k: f"{filename}:{pos}" for k, pos in g.locations.items()})


def parse_expr(text: str, filename: str = "<string>") -> Scope:
    """Parse one scope ``L[...] [Red[...]] { body }``; raises ParseError."""
    s = _run(text, filename, "expr_start")
    assert isinstance(s, Scope)
    return s
