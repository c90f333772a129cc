# Policy checks for rego/ and bundles/default (DESIGN §2, docs/policy.md). Tools default to the
# pinned builds of scripts/install-tools.sh; override e.g. `make policy-check OPA=/usr/bin/opa`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TOOLS_BIN ?= $(HOME)/.cache/policy-sidecar/tools/bin
OPA ?= $(TOOLS_BIN)/opa
CONFTEST ?= $(TOOLS_BIN)/conftest
REGAL ?= $(TOOLS_BIN)/regal
# The policy sandbox (no http.send, opa.runtime, net.lookup_ip_addr, remote schemas): the same
# capabilities bundle builds and validation use. Regenerate with scripts/opa-capabilities.py.
CAPABILITIES ?= sidecar/opa_capabilities.json

# Line coverage gate over the shipped replication policies (tests excluded).
COVERAGE_MIN ?= 90
POLICY_TEST_PATHS := rego/replication rego/system bundles/default
INVENTORY_POLICY := rego/inventory
# conftest policies for the rendered Helm chart (tests/integration/test_helm_chart.py runs them on
# every values example); their own package main, so checked apart from rego/inventory.
CHART_POLICY := deploy/helm/policy
INVENTORY_FIXTURES := tests/fixtures/inventory
# Configs that must pass the inventory checks: the fixture and the shared case config.
INVENTORY_GOOD := $(INVENTORY_FIXTURES)/good.yaml tests/cases/sidecar.yaml

# Percentage of covered lines in rego/replication/*.rego minus *_test.rego, from `opa test
# --coverage --format=json` on stdin. Computed from per-file counts because the report's own
# total also counts the test files.
_SHIPPED := some name, file in input.files; startswith(name, "rego/replication/"); not endswith(name, "_test.rego")
COVERAGE_QUERY := [pct | covered := sum([file.covered_lines | $(_SHIPPED)]); \
	missed := sum([file.not_covered_lines | $(_SHIPPED)]); \
	pct := round((1000 * covered) / (covered + missed)) / 10][0]

.PHONY: policy-check policy-fmt policy-syntax policy-lint policy-test policy-conftest

policy-check: policy-fmt policy-syntax policy-lint policy-test policy-conftest
	@echo "policy-check: all policy checks passed"

policy-fmt:
	@# --list names every file `opa fmt -w` would change; --fail turns that into an error.
	$(OPA) fmt --list --fail rego $(CHART_POLICY)

policy-syntax:
	$(OPA) check --strict --capabilities $(CAPABILITIES) rego bundles/default
	$(OPA) check --strict $(CHART_POLICY)

policy-lint:
	$(REGAL) lint --config-file .regal/config.yaml rego
	$(REGAL) lint --config-file .regal/config.yaml $(CHART_POLICY)

policy-test:
	$(OPA) test --capabilities $(CAPABILITIES) $(POLICY_TEST_PATHS)
	@report="$$(mktemp)"; trap 'rm -f "$$report"' EXIT; \
	$(OPA) test --capabilities $(CAPABILITIES) --coverage --format=json $(POLICY_TEST_PATHS) > "$$report"; \
	pct="$$($(OPA) eval --fail --format=raw --stdin-input '$(COVERAGE_QUERY)' < "$$report")"; \
	echo "rego/replication line coverage: $$pct% (minimum $(COVERAGE_MIN)%)"; \
	if ! awk -v pct="$$pct" -v min="$(COVERAGE_MIN)" 'BEGIN { exit !(pct >= min) }'; then \
		echo "coverage gate failed: $$pct% < $(COVERAGE_MIN)%"; exit 1; \
	fi

policy-conftest:
	$(CONFTEST) verify --policy $(INVENTORY_POLICY)
	$(CONFTEST) verify --policy $(CHART_POLICY)
	$(CONFTEST) test --policy $(INVENTORY_POLICY) $(INVENTORY_GOOD)
	@# Every bad fixture must be rejected; conftest exits 1 on a failed check.
	@for config in $(INVENTORY_FIXTURES)/bad-*.yaml; do \
		if $(CONFTEST) test --no-color --policy $(INVENTORY_POLICY) "$$config"; then \
			echo "$$config: expected the inventory checks to reject it"; exit 1; \
		fi; \
		echo "$$config: rejected as expected"; \
	done
