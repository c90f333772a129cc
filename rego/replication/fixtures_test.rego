# METADATA
# title: Shared test fixtures
# description: An inventory and input builders shared by the replication policy tests.
# scope: package
# custom:
#   id: replication.fixtures_test
package replication.fixtures_test

import rego.v1

_registry(name, region, environment, gdpr, cost) := {
	"name": name,
	"region": region,
	"environment": environment,
	"gdpr": gdpr,
	"role": "primary",
	"backs": null,
	"healthy": true,
	"tenants": [],
	"egress_cost_per_gb": cost,
}

# METADATA
# description: The test inventory; ci is the source registry of every fixture image.
registries := [
	_registry("ci", "us-east-1", "ci", false, 0.01),
	_registry("prod-eu", "eu-west-1", "prod", true, 0.09),
	object.union(
		_registry("prod-eu-dr", "eu-central-1", "prod", true, 0.09),
		{"role": "secondary", "backs": "prod-eu"},
	),
	_registry("prod-us", "us-east-1", "prod", false, 0.05),
	_registry("prod-ap", "ap-southeast-1", "prod", false, 0.12),
	_registry("dev-us", "us-east-1", "dev", false, 0.02),
	_registry("dev-eu", "eu-west-1", "dev", true, 0.02),
	_registry("sandbox", "us-east-1", "sandbox", false, 0.01),
	object.union(_registry("acme-prod", "us-east-1", "prod", false, 0.05), {"tenants": ["acme"]}),
]

# METADATA
# description: A fresh passing scan relative to now.
passed_scan := {
	"status": "passed",
	"completed_at": "2026-11-27T12:00:00Z",
	"critical": 0,
	"high": 3,
	"source": "label",
}

# METADATA
# description: A complete input for a prod image with a fresh passing scan.
base := {
	"now": "2026-11-28T12:00:00Z",
	"event": "push",
	"image": {
		"registry": "ci",
		"repository": "team/app",
		"tag": "prod-1.0",
		"digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
		"labels": {},
		"annotations": {},
		"created_at": null,
		"size_bytes": 1000000,
		"platforms": ["linux/amd64"],
		"scan": passed_scan,
		"tenant": null,
	},
	"registries": registries,
	"access": {},
	"tenant": null,
	"caller": {"subject": "ci-bot", "tenant": null, "roles": ["replicator"]},
}

# METADATA
# description: The base input with the given image fields replaced.
image(fields) := object.union(base, {"image": fields})

# METADATA
# description: The base input with the given top-level fields replaced.
with_input(fields) := object.union(base, fields)

# METADATA
# description: The inventory with one registry's fields replaced.
patch_registry(name, fields) := [patched |
	some registry in registries
	patched := _patched(registry, name, fields)
]

_patched(registry, name, fields) := object.union(registry, fields) if registry.name == name

else := registry

# METADATA
# description: The base input with the given image fields and the inventory changed as given.
with_registries(fields, inventory) := object.union(image(fields), {"registries": inventory})
