# The two commands the README opens with:
#   make demo   install lbcore and run the demo (demo members + engine on examples/demo.yaml)
#   make test   install what the tests need (Debian packages, Python test extras) and run every test
PYTHON ?= python3
PURE_TWIN_TESTS = tests/unit/test_http1.py tests/unit/test_http1_h11.py tests/unit/test_acl.py tests/unit/test_router.py tests/unit/test_balance.py tests/unit/test_persistence.py tests/unit/test_runtime.py tests/unit/test_stats_counters.py tests/unit/test_accesslog.py tests/unit/test_request_path.py tests/integration/test_routing.py tests/integration/test_http_edges.py tests/integration/test_lifecycle.py tests/integration/test_tls_engine.py tests/integration/test_accesslog_sinks.py
DEB_PACKAGES = curl iproute2 procps chromium haproxy nginx-light wrk stunnel4 openssl postgresql valgrind

.PHONY: demo test deps install unit integration pgo

install:
	$(PYTHON) -m pip install -q -e '.[test,bench]'

deps: install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	fi

demo: install
	lbcore demo

# The compiled modules rebuilt in place with GCC's profile-guided optimisation, trained
# by the benchmark harness (scripts/build-pgo says how and why).
pgo: deps
	PYTHON=$(PYTHON) scripts/build-pgo

# scripts/pg-test-server runs the tests beside a throwaway PostgreSQL server (a Unix
# socket in a temporary directory) and sets LBCORE_TEST_PG_URL for the control plane's
# PostgreSQL store tests; it is stopped and removed afterwards.
# Then the engine's HTTP tests again on the pure-Python twins of lbcore/_fastpath (the
# first run uses the compiled ones), and the micro-benchmarks once each, untimed.
test: deps
	bash scripts/pg-test-server $(PYTHON) -m pytest -q tests
	LBCORE_NO_EXTENSIONS=1 $(PYTHON) -m pytest -q $(PURE_TWIN_TESTS)
	$(PYTHON) -m pytest -q bench/micro --benchmark-disable

unit:
	$(PYTHON) -m pytest -q tests/unit

integration:
	bash scripts/pg-test-server $(PYTHON) -m pytest -q tests/integration
