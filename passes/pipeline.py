"""The pass framework: pass classes, their registry, pipeline text and the runner.

A pass is a frozen dataclass with a kebab-case class-level ``name``, typed
option fields with defaults, a docstring stating what it guarantees, and
``apply(graph) -> Graph``. It may check option values in ``__post_init__``,
raising ValueError (``option 'k' of NAME must be ..., got ...``); pipeline
text turns that into a :class:`PipelineError`. Passes never mutate: they
return a new graph (or the same object when nothing changed).

Pipeline text (what ``--passes`` takes)::

    dce,fold-constants{max_bytes=4096},cse

Options are ``key=value`` separated by commas inside braces; ``key`` may be
written with ``-`` or ``_``; values are converted to the field's type (int,
float, bool ``true``/``false``, str; a quoted string ``"a,b"`` may hold any
character). ``format_pipeline`` is the inverse of ``parse_pipeline``.
"""

from __future__ import annotations

import dataclasses
import os
import time
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence, TypeVar

from tensoropt.errors import PipelineError, VerifyError
from tensoropt.ir.graph import Graph


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses are frozen dataclasses registered with
    :func:`register_pass`; their fields are the pass's options."""

    name: ClassVar[str] = ""

    def apply(self, graph: Graph) -> Graph:
        raise NotImplementedError


#: pass name -> pass class, filled by :func:`register_pass`.
PASSES: dict[str, type[Pass]] = {}

P = TypeVar("P", bound=type[Pass])


def register_pass(cls: P) -> P:
    """Class decorator: add a pass class to :data:`PASSES` under ``cls.name``."""
    # Look in the class's own __dict__: a subclass of a dataclass inherits
    # the dataclass markers without being one itself.
    params = cls.__dict__.get("__dataclass_params__")
    if params is None or not params.frozen:
        raise TypeError(f"pass {cls.__name__} must be a @dataclass(frozen=True)")
    if not cls.name or cls.name in PASSES:
        raise ValueError(f"pass {cls.__name__} needs a unique name, got {cls.name!r}")
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"option {f.name!r} of pass {cls.name} needs a default")
        _option_kind(cls, f.name)  # fails early on an unsupported option type
    PASSES[cls.name] = cls
    return cls


# --------------------------------------------------------------------------
# Option types


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _option_kind(cls: type, field: str) -> tuple[type, bool]:
    """(base type, optional?) of an option; TypeError for unsupported types."""
    t = _hints(cls)[field]
    optional = False
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(t)) != 2:
            raise TypeError(f"option {field!r} of {cls.__name__}: unsupported type {t}")
        t, optional = args[0], True
    if t not in (int, float, bool, str):
        raise TypeError(f"option {field!r} of {cls.__name__}: unsupported type {t}")
    return t, optional


_KIND_NAMES = {int: "an int", float: "a float", bool: "a bool (true/false)", str: "a string"}


def _type_name(cls: type, field: str) -> str:
    t, optional = _option_kind(cls, field)
    return t.__name__ + (" | none" if optional else "")


def pass_options(cls: type[Pass]) -> dict[str, str]:
    """Option name -> type name (``int``, ``float``, ``bool``, ``str``, ``int | none``)."""
    return {f.name: _type_name(cls, f.name) for f in dataclasses.fields(cls)}


def _options_help(cls: type[Pass]) -> str:
    fs = dataclasses.fields(cls)
    if not fs:
        return f"{cls.name} takes no options"
    return "options of " + cls.name + ": " + ", ".join(f"{f.name}: {_type_name(cls, f.name)}" for f in fs)


def _convert(cls: type[Pass], field: str, raw: str, quoted: bool) -> object:
    t, optional = _option_kind(cls, field)
    if optional and raw == "none" and not quoted:
        return None
    bad = PipelineError(f"option {field!r} of {cls.name} wants {_KIND_NAMES[t]}, got {raw!r}")
    if t is str:
        return raw
    if quoted:
        raise bad
    if t is bool:
        if raw in ("true", "false"):
            return raw == "true"
        raise bad
    if t is int:
        try:
            return int(raw, 0) if raw.lower().startswith(("0x", "-0x")) else int(raw)
        except ValueError:
            raise bad from None
    try:
        return float(raw)
    except ValueError:
        raise bad from None


# --------------------------------------------------------------------------
# Pipeline text


_BARE_EXTRA = set("_-.+:/")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Tokens (kind, text, 1-based column): word, str, and the punctuation ``{}=,``."""
    out: list[tuple[str, str, int]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "{}=,":
            out.append((c, c, i + 1))
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= len(text):
                raise PipelineError(f"pipeline syntax error at column {i + 1}: unterminated string")
            out.append(("str", "".join(buf), i + 1))
            i = j + 1
        elif c.isalnum() or c in _BARE_EXTRA:
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in _BARE_EXTRA):
                j += 1
            out.append(("word", text[i:j], i + 1))
            i = j
        else:
            raise PipelineError(f"pipeline syntax error at column {i + 1}: unexpected character {c!r}")
    return out


def parse_pipeline(text: str) -> list[Pass]:
    """``"dce,cse{opt=1}"`` -> pass instances; :class:`PipelineError` on any problem."""
    toks = _tokenize(text)
    end = len(text) + 1
    pos = 0

    def peek() -> tuple[str, str, int]:
        return toks[pos] if pos < len(toks) else ("end", "", end)

    def expect(kind: str, what: str) -> tuple[str, str, int]:
        nonlocal pos
        tok = peek()
        if tok[0] != kind:
            got = "the end" if tok[0] == "end" else repr(tok[1])
            raise PipelineError(f"pipeline syntax error at column {tok[2]}: expected {what}, got {got}")
        pos += 1
        return tok

    passes: list[Pass] = []
    if not toks:
        return passes
    while True:
        _, pname, col = expect("word", "a pass name")
        cls = PASSES.get(pname)
        if cls is None:
            raise PipelineError(
                f"unknown pass {pname!r} at column {col}; valid passes: {', '.join(sorted(PASSES))}"
            )
        opts: dict[str, object] = {}
        if peek()[0] == "{":
            pos += 1
            fields = {f.name for f in dataclasses.fields(cls)}
            while peek()[0] != "}":
                _, key, kcol = expect("word", "an option name")
                fname = key.replace("-", "_")
                if fname not in fields:
                    raise PipelineError(f"unknown option {key!r} of {cls.name} at column {kcol}; {_options_help(cls)}")
                if fname in opts:
                    raise PipelineError(f"option {key!r} of {cls.name} given twice (column {kcol})")
                expect("=", "'='")
                tok = peek()
                if tok[0] not in ("word", "str"):
                    expect("word", f"a value for option {key!r}")
                pos += 1
                opts[fname] = _convert(cls, fname, tok[1], tok[0] == "str")
                if peek()[0] != "}":
                    expect(",", "',' or '}'")
            pos += 1
        try:
            passes.append(cls(**opts))
        except ValueError as e:
            # A pass validates its options in ``__post_init__`` by raising
            # ValueError with a message naming the option.
            msg = str(e)
            raise PipelineError(msg if cls.name in msg else f"{cls.name}: {msg}") from None
        if peek()[0] == "end":
            return passes
        expect(",", "',' between passes")


def _format_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        if v and v not in ("true", "false", "none") and all(c.isalnum() or c in _BARE_EXTRA for c in v):
            return v
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def format_pipeline(passes: Sequence[Pass]) -> str:
    """Pipeline text for ``passes``: ``parse_pipeline(format_pipeline(p)) == p``.

    Options equal to their defaults are left out.
    """
    parts = []
    for p in passes:
        opts = []
        for f in dataclasses.fields(p):
            v = getattr(p, f.name)
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            if v != default or type(v) is not type(default):
                opts.append(f"{f.name}={_format_value(v)}")
        parts.append(p.name + ("{" + ",".join(opts) + "}" if opts else ""))
    return ",".join(parts)


# --------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class PassReport:
    """What one pass did: wall time and node counts before/after."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


OnPass = Callable[[Pass, Graph, PassReport], None]


def verify_enabled() -> bool:
    """True when ``TENSOROPT_VERIFY=1`` asks for verification after every pass."""
    return os.environ.get("TENSOROPT_VERIFY", "") not in ("", "0", "false")


def _verify(graph: Graph, when: str) -> None:
    from tensoropt.ir.verify import verify
    from tensoropt.ops import REGISTRY

    try:
        verify(graph, REGISTRY)
    except VerifyError as e:
        raise type(e)(f"{when}: {e}") from e


def run_pipeline(
    graph: Graph,
    passes: Sequence[Pass],
    *,
    verify: bool | None = None,
    on_pass: OnPass | None = None,
) -> tuple[Graph, list[PassReport]]:
    """Apply ``passes`` in order; return the final graph and one report per pass.

    ``verify=None`` follows ``TENSOROPT_VERIFY=1``. When verifying, the input
    graph is checked first (so a bad input is not blamed on a pass) and then
    the result of every pass; a failure raises the :class:`VerifyError`
    prefixed with ``after pass 'NAME'``. ``on_pass(pass, graph, report)`` is
    called after each pass with its result (for ``--print-after-all`` style
    hooks).
    """
    check = verify_enabled() if verify is None else verify
    if check:
        _verify(graph, "pipeline input")
    reports: list[PassReport] = []
    for p in passes:
        before = len(graph.nodes)
        t0 = time.perf_counter()
        graph = p.apply(graph)
        dt = time.perf_counter() - t0
        if check:
            _verify(graph, f"after pass {format_pipeline([p])!r}")
        report = PassReport(p.name, dt, before, len(graph.nodes))
        reports.append(report)
        if on_pass is not None:
            on_pass(p, graph, report)
    return graph, reports
