# METADATA
# title: Sidecar inventory checks
# description: >-
#   conftest policy for a sidecar config YAML before deployment: every registry has a region and
#   an environment, GDPR flags are real booleans, roles are primary or secondary, every secondary
#   backs an existing primary, tenant-dedicated registries name tenants listed in
#   policy.tenancy.tenants, egress costs are non-negative numbers and names are unique.
#   registries is a list or a Freightliner object holding a registries list; each attribute comes
#   from the registry's own field or its metadata map, snake_case or camelCase.
# scope: package
# custom:
#   id: inventory
package main

import rego.v1

# Every inventory attribute and the spellings accepted for it, canonical first.
_spellings := {
	"region": ["region"],
	"environment": ["environment"],
	"gdpr": ["gdpr"],
	"role": ["role"],
	"backs": ["backs"],
	"tenants": ["tenants"],
	"egress_cost_per_gb": ["egress_cost_per_gb", "egressCostPerGb"],
}

_registries := input.registries if is_array(input.registries)

_registries := input.registries.registries if is_array(input.registries.registries)

_metadata(registry) := registry.metadata if is_object(registry.metadata)

else := {}

# The registry's own field wins over its metadata map; a null counts as absent.
_values(registry, key) := [value |
	some source in [registry, _metadata(registry)]
	some spelling in _spellings[key]
	value := source[spelling]
	value != null
]

_attr(registry, key) := values[0] if {
	values := _values(registry, key)
	count(values) > 0
}

_has_name(registry) if {
	is_string(registry.name)
	registry.name != ""
}

# A list, not a set or an object keyed by name: duplicate names must be counted and reported,
# not merged away or turned into an evaluation conflict.
_named := [registry |
	some registry in _registries
	_has_name(registry)
]

_names contains registry.name if some registry in _named

_role(registry) := role if {
	role := _attr(registry, "role")
} else := "primary"

_primaries contains registry.name if {
	some registry in _named
	_role(registry) == "primary"
}

_secondary(registry) if _role(registry) == "secondary"

_known_tenants contains tenant if some tenant in input.policy.tenancy.tenants

_blank(registry, key) if not _attr(registry, key)

_blank(registry, key) if _attr(registry, key) == ""

_non_negative_number(value) if {
	is_number(value)
	value >= 0
}

deny contains "config has no registries list" if not _registries

deny contains msg if {
	some index, registry in _registries
	not _has_name(registry)
	msg := sprintf("registry #%d has no name", [index])
}

deny contains msg if {
	some name in _names
	count([registry | some registry in _named; registry.name == name]) > 1
	msg := sprintf("registry %q: duplicate name, registry names must be unique", [name])
}

deny contains msg if {
	some registry in _named
	_blank(registry, "region")
	msg := sprintf("registry %q has no region", [registry.name])
}

deny contains msg if {
	some registry in _named
	_blank(registry, "environment")
	msg := sprintf("registry %q has no environment", [registry.name])
}

deny contains msg if {
	some registry in _named
	gdpr := _attr(registry, "gdpr")
	not is_boolean(gdpr)
	msg := sprintf(
		"registry %q: gdpr must be a boolean (true or false), not the %s %s",
		[registry.name, type_name(gdpr), json.marshal(gdpr)],
	)
}

deny contains msg if {
	some registry in _named
	role := _role(registry)
	not role in {"primary", "secondary"}
	msg := sprintf("registry %q: role must be primary or secondary, not %s", [registry.name, json.marshal(role)])
}

deny contains msg if {
	some registry in _named
	_secondary(registry)
	_blank(registry, "backs")
	msg := sprintf("registry %q is a secondary but does not name the primary it backs", [registry.name])
}

deny contains msg if {
	some registry in _named
	_secondary(registry)
	primary := _attr(registry, "backs")
	primary != ""
	not primary in _names
	msg := sprintf(
		"registry %q backs %s, which is not a registry of the inventory",
		[registry.name, json.marshal(primary)],
	)
}

deny contains msg if {
	some registry in _named
	_secondary(registry)
	primary := _attr(registry, "backs")
	primary in _names
	not primary in _primaries
	msg := sprintf("registry %q backs %q, which is not a primary registry", [registry.name, primary])
}

deny contains msg if {
	some registry in _named
	tenants := _attr(registry, "tenants")
	not is_array(tenants)
	msg := sprintf("registry %q: tenants must be a list of tenant ids", [registry.name])
}

deny contains msg if {
	some registry in _named
	some tenant in _attr(registry, "tenants")
	not tenant in _known_tenants
	msg := sprintf(
		"registry %q is dedicated to unknown tenant %s (policy.tenancy.tenants: %s)",
		[registry.name, json.marshal(tenant), json.marshal(sort(_known_tenants))],
	)
}

deny contains msg if {
	some registry in _named
	cost := _attr(registry, "egress_cost_per_gb")
	not _non_negative_number(cost)
	msg := sprintf(
		"registry %q: egress_cost_per_gb must be a non-negative number, not %s",
		[registry.name, json.marshal(cost)],
	)
}
