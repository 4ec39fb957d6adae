# Two commands a new user needs; both create the virtual environment on first use.
#   make demo  - the whole pipeline on the bundled sample, on CPU, into runs/demo
#   make test  - the test suite
#   make bench - every speed bench, one after the other (each prints its ratio last; those that need
#                ../shared/data say so and skip); the output is also kept in bench/last_bench.log
SHELL := /bin/bash
PY := .venv/bin/python
RUN ?= runs/demo

.PHONY: demo test venv bench

venv:
	@bash scripts/ensure_venv.sh >/dev/null

demo: venv
	@bash scripts/demo.sh $(RUN)

test: venv
	$(PY) -m pytest -q tests

BENCHES := bench/bpe_speed.py bench/datagen_speed.py bench/loader_scale.py bench/train_speed.py bench/decode_speed.py

bench: venv
	@set -o pipefail; for b in $(BENCHES); do echo "=== $$b"; $(PY) $$b || exit 1; done 2>&1 | tee bench/last_bench.log
	@$(PY) bench/model_size.py config/config.json config/config_reproduce.json config/config_tiny.json
