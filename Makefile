# Two entry points for a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.*
START   := $(shell date +%s)

.PHONY: venv demo test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv  # the demo prints the seconds of each of its steps; this adds the .venv set-up and the total
	@echo ".venv ready ($$(( $$(date +%s) - $(START) )) s)"
	$(BIN)/python -m uniformerv2.demo --output demo-output
	@echo "make demo: $$(( $$(date +%s) - $(START) )) s in all"

test: venv
	$(BIN)/python -m pytest

# Our B/16 on this machine; with the official model file at $(OFFICIAL), side by side with it (docs/benchmarks.md).
OFFICIAL ?= build/official/uniformerv2_model.py
bench: venv
	$(BIN)/uniformerv2 bench model --preset k400_b16_8x224 --batch-size 1 --dtype fp32 --iters 3
	@if [ -f "$(OFFICIAL)" ]; then $(BIN)/python benchmarks/cpu_vs_official.py --official $(OFFICIAL); \
	else echo "(side by side with the official code: put its slowfast/models/uniformerv2_model.py at $(OFFICIAL))"; fi

clean:
	rm -rf demo-output build *.egg-info
