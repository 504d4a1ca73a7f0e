"""The codegen tests that depend on tile choices, run again for an AVX2-only CPU.

Sessions and CI land on AVX2-only machines (AMD Zen 3) and AVX-512 ones: a
suite that passes on one must pass on the other. ``test_schedule.py`` runs
each case for every instruction set the host executes; this runs the
differential test, a light model and GPT-2 against their references as a
whole-suite CI run would, with ``$TENSOROPT_MCPU`` pinning code generation
to AVX2 (``x86-64-v3``). On an AVX2-only host that is what the normal run
does already, so this is skipped there; without AVX2 it cannot run at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tvm.target.codegen import llvm_cpu_has_features

from tensoropt.codegen.schedule import MCPU_ENV, host_target

HERE = Path(__file__).resolve().parent
AVX2_CPU = "x86-64-v3"


def _has(feature: str) -> bool:
    try:
        return bool(llvm_cpu_has_features([feature], host_target()))
    except (RuntimeError, ValueError):
        return False


@pytest.mark.skipif(not _has("avx512f"), reason="an AVX2-only host runs these for AVX2 in the normal suite")
@pytest.mark.skipif(not _has("avx2"), reason="the host cannot run AVX2 code")
def test_codegen_suite_for_an_avx2_cpu() -> None:
    tests = [
        # the first chunks of the differential test: random graphs against the interpreter
        *(f"{HERE / 'test_differential.py'}::test_random_graphs_compile_to_the_interpreters_answer[{k}]"
          for k in range(3)),
        f"{HERE / 'test_models.py'}::test_light_model_matches_onnxruntime[squeezenet]",
        f"{HERE / 'test_models.py'}::test_gpt2_matches_pytorch_torch_tensors_in_and_out",
    ]
    env = {**os.environ, MCPU_ENV: AVX2_CPU, "TENSOROPT_VERIFY": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
