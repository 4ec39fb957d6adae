# Two commands a new user needs; both create the virtual environment on first use.
#   make demo  - the whole pipeline on the bundled sample, on CPU, into runs/demo
#   make test  - the test suite
PY := .venv/bin/python
RUN ?= runs/demo

.PHONY: demo test venv bench

venv:
	@bash scripts/ensure_venv.sh >/dev/null

demo: venv
	@bash scripts/demo.sh $(RUN)

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) bench/bpe_speed.py
