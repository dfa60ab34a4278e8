# Two commands for a new user:  `make demo`  and  `make test`.
# Both create .venv with a Python 3.10 found on this machine (scripts/find-python310.sh)
# and reuse it on later runs; the install is redone only when pyproject.toml changes.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lavasnn-installed
PYTEST_ARGS ?=

.PHONY: demo test venv bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/find-python310.sh
	@set -e; \
	if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then \
		py=$$(bash scripts/find-python310.sh); \
		echo "creating $(VENV) with $$py"; \
		rm -rf $(VENV); \
		"$$py" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

DEMO_RUN := runs/demo-biograd

demo: $(STAMP)
	$(VENV)/bin/lavasnn info
	$(VENV)/bin/lavasnn smoke
	$(VENV)/bin/lavasnn crosscheck neurons --steps 40
	$(VENV)/bin/lavasnn crosscheck biograd --samples 8
	$(VENV)/bin/lavasnn crosscheck perturb
	$(VENV)/bin/lavasnn crosscheck perturb --rule loihi2
	rm -rf $(DEMO_RUN)
	$(VENV)/bin/lavasnn train biograd --data digits --hidden 64 --epochs 3 --batch 32 \
		--sleep-batch 32 --lr 5e-3 --out $(DEMO_RUN)

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
