"""The error types users see. The CLI prints ``str(err)`` on one line and exits 2.

Every message names *what* is wrong and *where* (file:line:col, node, pass or
option), and for a bad choice lists the valid ones.
"""

from __future__ import annotations


class TensoroptError(Exception):
    """Base of every error caused by bad input (as opposed to a bug)."""


class ParseError(TensoroptError):
    """Malformed IR text: ``file:line:col: message``."""


class VerifyError(TensoroptError):
    """The IR breaks an invariant (SSA, types, shapes, Expr well-formedness)."""


class ShapeError(VerifyError):
    """An op's inputs have shapes or dtypes its rules reject."""


class UnknownOpError(VerifyError):
    """An op name that is not in the registry."""


class EvalError(TensoroptError):
    """Evaluation failed because of the inputs (missing, wrong shape or dtype)."""


class BudgetError(EvalError):
    """A declared size is over a memory budget: the node would allocate more
    than this process may use. Raised before anything is allocated for it; the
    message names the node, the type and the size."""


class PipelineError(TensoroptError):
    """A bad pass pipeline: unknown pass, option or value."""


class InputFileError(TensoroptError):
    """A file that cannot be read or is not what it claims to be."""


class UnsupportedError(TensoroptError):
    """A model uses something tensoropt cannot import or export (an op, a dtype,
    an attribute value): the message names it, the node and the opset."""


class NeedsInputValueError(UnsupportedError):
    """Importing needs the value of graph inputs (a Reshape target fed as an
    input): ``inputs`` names them. ``tensoropt.backend`` imports such a model
    at run time with exactly these inputs bound as constants."""

    def __init__(self, message: str, inputs: tuple[str, ...]) -> None:
        super().__init__(message)
        self.inputs = inputs
