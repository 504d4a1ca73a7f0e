"""Tuning (``tensoropt tune``, in progress): MetaSchedule records that survive ``kill -9``.

Landed so far: :mod:`.records` (repair and validation of MetaSchedule's JSON
database before every open, an exclusive lock per database directory, and
the per-workload counts a resumed run needs). The driver, the cost models
and the CLI follow; see ``docs/tune-research.md`` for what TVM 0.27's
MetaSchedule does and where it needs help.
"""
