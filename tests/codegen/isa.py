"""The instruction sets a test can compile for and run on this host.

Sessions and CI land on AVX2-only machines (AMD Zen 3) and AVX-512 ones
(Zen 4/5). Tests that depend on tile choices run once per instruction set
the host can execute, with the CPU pinned in the target, so both kinds of
machine see the same cases: an AVX2 target runs everywhere AVX2 does, an
AVX-512 target only where the host has AVX-512 (elsewhere it is skipped,
not failed).
"""

from __future__ import annotations

from functools import lru_cache

from tvm.target import Target
from tvm.target.codegen import llvm_cpu_has_features

from tensoropt.codegen.schedule import host_target

#: ISA name -> (an LLVM -mcpu with exactly that vector ISA, the feature the host needs)
ISAS: dict[str, tuple[str, str]] = {
    "avx2": ("x86-64-v3", "avx2"),
    "avx512": ("x86-64-v4", "avx512f"),
}


@lru_cache(maxsize=1)
def runnable_targets() -> dict[str, Target]:
    """ISA name -> llvm target pinned to it, for each ISA this host executes.

    A host with neither (not x86, or an old x86) gets its own target as "host".
    """
    host = host_target()
    out: dict[str, Target] = {}
    for name, (mcpu, feature) in ISAS.items():
        try:
            ok = bool(llvm_cpu_has_features([feature], host))
        except (RuntimeError, ValueError):
            ok = False
        if ok:
            out[name] = host_target(mcpu=mcpu)
    return out or {"host": host}
