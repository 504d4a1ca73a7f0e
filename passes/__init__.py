"""Graph passes (package ``tensoropt.passes``) and the pipeline that runs them.

Importing this package registers every pass in :data:`PASSES`.
"""

from .pipeline import (
    PASSES,
    Pass,
    PassReport,
    format_pipeline,
    parse_pipeline,
    pass_options,
    register_pass,
    run_pipeline,
    verify_enabled,
)
from . import bind_dims, dce, fold_batchnorm, fold_constants, cse, fuse  # noqa: F401  (registers the passes)
from .derive import derive  # noqa: F401,E402  (registers the derive pass)

__all__ = [
    "PASSES",
    "Pass",
    "PassReport",
    "format_pipeline",
    "parse_pipeline",
    "pass_options",
    "register_pass",
    "run_pipeline",
    "verify_enabled",
]
