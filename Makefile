# chutes-operator: everything a newcomer or CI needs, from a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8787

.PHONY: demo test lint sandbox kube-sandbox run bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

## demo: the operator publishing examples/chute-gateway on both emulators (no cluster, no token)
demo: $(STAMP)
	$(PY) -m chutes.sandbox.demo

## test: create the virtualenv, install, run the whole suite
test: $(STAMP)
	$(PY) -m pytest -q

## lint: ruff and mypy (strict)
lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/mypy operator/chutes

## sandbox: the Cloudflare API emulator on PORT (prints base_url and token as one JSON line)
sandbox: $(STAMP)
	$(PY) -m chutes.sandbox.cloudflare --port $(PORT)

## kube-sandbox: the Kubernetes API emulator (prints its URL and kubeconfig path)
kube-sandbox: $(STAMP)
	$(PY) -m chutes.sandbox.kubernetes --port 0 --crds crds

## run: the operator against the current kubeconfig and real Cloudflare
run: $(STAMP)
	$(VENV)/bin/chutes run

## bench: the benchmarks (print figures; not tests)
bench: $(STAMP)
	$(PY) bench/core.py

clean:
	rm -rf $(VENV) build *.egg-info operator/*.egg-info
