# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the dependency list changes.
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 resolves to the CPU wheel on this machine's find-links; see README.
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tensoropt demo

test: $(STAMP)
	TENSOROPT_VERIFY=1 $(BIN)/python -m pytest
	$(BIN)/python -m mypy tensoropt/ir

test-slow: $(STAMP)
	TENSOROPT_VERIFY=1 $(BIN)/python -m pytest -m slow

# Speed claims come from here: JSON + PNG under benchmarks/results/.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/interp_speed.py
	$(BIN)/python benchmarks/onnx_import_speed.py
	$(BIN)/python benchmarks/onnx_conformance.py
	$(BIN)/python benchmarks/gemm_speed.py
	$(BIN)/python benchmarks/model_speed.py
	$(BIN)/python benchmarks/derive_references.py
	$(BIN)/python benchmarks/derive_ops.py
	$(BIN)/python benchmarks/derive_e2e.py

typecheck: $(STAMP)
	$(BIN)/python -m mypy tensoropt/ir

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
