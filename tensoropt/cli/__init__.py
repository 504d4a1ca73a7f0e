"""The ``tensoropt`` command line: a thin layer over :mod:`tensoropt.api`.

Contract: bad input of any kind (unreadable file, malformed text, unknown op,
shape mismatch, bad pipeline, missing input) prints ONE line
``tensoropt: error: ...`` naming what and where, and exits 2. Output files are
written atomically, so a failure never leaves a half-written file. ``--json``
makes every command print one JSON object on stdout instead of tables.

Layout: :mod:`.common` holds the shared helpers and imports nothing else of
this package; one module per command family (:mod:`.graph`, :mod:`.opt`,
:mod:`.listing`, :mod:`.compile`, :mod:`.bench`, :mod:`.derive`, :mod:`.demo`)
imports only from :mod:`.common`; :mod:`.main` wires them into the parser.
"""

from .main import main

__all__ = ["main"]
