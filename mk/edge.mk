# traefik/ and monitoring/: the edge and the observability stack, proven with the real
# programs by tests/edge (part of `make test`). Pebble stands in for Let's Encrypt.
SYSTEM_PACKAGES += pebble prometheus prometheus-alertmanager prometheus-node-exporter

.PHONY: test-edge monitoring-check htpasswd

test-edge: $(VENV)/.installed $(TINY_MODEL) system-deps ## Only the edge and monitoring tests (real Traefik, Pebble, Prometheus, ...)
	LLM_TEST_MODEL="$(TINY_MODEL)" $(BIN)/pytest tests/edge

monitoring-check: $(VENV)/.installed system-deps ## promtool check/test rules, amtool check-config, Grafana structure (no model needed)
	$(BIN)/pytest tests/edge/test_edge_monitoring_static.py

htpasswd: $(VENV)/.installed ## Add or replace a basic-auth user: make htpasswd USERS_FILE=path USER_NAME=alice (asks the password)
	@test -n "$(USERS_FILE)" -a -n "$(USER_NAME)" || { echo "htpasswd: set USERS_FILE=<path> USER_NAME=<name>" >&2; exit 2; }
	$(BIN)/python traefik/htpasswd.py "$(USERS_FILE)" "$(USER_NAME)"
