# chutes-operator: everything a newcomer or CI needs, from a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8787
# Test processes (pytest-xdist): the suite mostly waits on the operator; 6 was the fastest of 4, 6 on 2 cores once the
# suite's CPU fell by a third (4 was, of 4, 6, 8, before).
TEST_WORKERS ?= 6

.PHONY: demo test lint sandbox kube-sandbox routerhosts-sandbox run bench lock crds proto clean

$(STAMP): pyproject.toml operator/requirements-runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c operator/requirements-runtime.txt -e '.[test,dev]'  # the image's versions
	touch $(STAMP)

## demo: the operator publishing examples/chute-gateway (Cloudflare), then examples/hosts (router-hosts) on the emulators
demo: $(STAMP)
	$(PY) -m chutes.sandbox.demo

# Python may write bytecode here whatever PYTHONDONTWRITEBYTECODE says. Each worker would rewrite every test module's
# assertions (a tenth of the suite's CPU, measured): two processes collect the suite first, in halves, and leave the
# rewritten modules (and the operator's compiled ones) where the workers and the operators they start find them.
# What the collection says is not shown: the run that follows says it.
## test: create the virtualenv, install, run the whole suite (TEST_WORKERS processes; 0: in this process)
test: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE sh -c '$(PY) -m pytest -q --collect-only -n 0 tests/test_[a-h]*.py >/dev/null 2>&1 & \
		$(PY) -m pytest -q --collect-only -n 0 tests/test_[i-z]*.py >/dev/null 2>&1; wait'
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15  # the slowest tests listed: where the suite's time goes

## lint: ruff, mypy (strict) and the layering contracts (import-linter, [tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/mypy operator/chutes
	PYTHONPATH=operator $(VENV)/bin/lint-imports --no-cache  # the tree at hand, whichever one is installed

## sandbox: the Cloudflare API emulator on PORT (prints base_url and token as one JSON line)
sandbox: $(STAMP)
	$(PY) -m chutes.sandbox.cloudflare --port $(PORT)

## routerhosts-sandbox: the router-hosts gRPC server emulator on PORT (mTLS; prints address and cert paths as one JSON line)
routerhosts-sandbox: $(STAMP)
	$(PY) -m chutes.sandbox.routerhosts --port $(PORT)

## kube-sandbox: the Kubernetes API emulator (prints its URL and kubeconfig path)
kube-sandbox: $(STAMP)
	$(PY) -m chutes.sandbox.kubernetes --port 0 --crds crds

## run: the operator against the current kubeconfig and real Cloudflare
run: $(STAMP)
	$(VENV)/bin/chutes run

## bench: the benchmarks (print figures; not tests)
bench: $(STAMP)
	$(PY) bench/core.py

## lock: pin the image's runtime dependencies to the versions installed in .venv (operator/requirements-runtime.txt);
## after `pip install -U <package>` in .venv, to move the pins on
lock:
	$(PY) tests/runtime_lock.py > operator/requirements-runtime.txt.new && mv operator/requirements-runtime.txt.new operator/requirements-runtime.txt

## proto: regenerate operator/chutes/hosts_core/generated/ from hosts_core/proto/ (grpcio-tools; never edit them by hand)
proto: $(STAMP)
	$(PY) tests/proto_gen.py

## crds: copy crds/ into the Helm chart (a test checks they are identical)
crds:
	cp crds/*.yaml charts/chutes-operator/crds/

clean:
	rm -rf $(VENV) build *.egg-info operator/*.egg-info
