# pydockerd: run `make test` as root (the tests mount, make namespaces and start daemons).
PYTHON ?= python3
# A real 3.9 interpreter, when the machine has one, also byte-compiles the daemon.
PY39 ?= $(shell for p in python3.9 /root/.pyenv/versions/3.9*/bin/python3; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2>/dev/null && echo $$p && break; done)

.PHONY: test soak lint bench apitypes

test: lint
	$(PYTHON) -m pytest -q -p no:cacheprovider -m "not soak" tests

# The long fuzz, fault-injection and load runs (each has a short slice in `make test`).
soak:
	$(PYTHON) -m pytest -q -p no:cacheprovider -m soak tests

# Every file must compile and parse as Python 3.9: minimal distros ship old interpreters.
lint:
	$(PYTHON) -m py_compile pydockerd.py drivers/*.py tests/*.py
	$(PYTHON) tests/lint39.py pydockerd.py drivers tests
	@if [ -n "$(PY39)" ]; then $(PY39) -m py_compile pydockerd.py drivers/*.py && \
		echo "compiled with $(PY39)"; fi

# Speed goals live here, never in timed tests. BENCH_REF_HOST=unix:///path BENCH_REF_PID=N
# measures a reference daemon (dockerd 20.10) side by side in the same run.
bench:
	$(PYTHON) tests/bench.py

# drivers/apitypes.py, the request types the daemon checks, from the Engine API spec (needs PyYAML).
apitypes:
	$(PYTHON) tests/gen_apitypes.py drivers/apitypes.py
