# METADATA
# title: Placement
# description: >-
#   Ranks routable registries by pulls in their region (most first), then lower egress cost, then
#   name. When the estimated replication cost (size in GB x the summed egress cost of the routes)
#   exceeds the threshold, routes shrink to the cost-optimal subset that keeps the rank-1 registry
#   and every compliance-required registry (COST_CONSOLIDATED).
# scope: package
# custom:
#   id: replication.placement
package replication.placement

import rego.v1

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {"COST_CONSOLIDATED": "estimated replication cost exceeds the threshold; routes consolidated"}

default _threshold := 100.0

_threshold := data.replication.settings.cost.threshold

default _access := {}

_access := input.access if is_object(input.access)

default _size_bytes := 0

_size_bytes := input.image.size_bytes if is_number(input.image.size_bytes)

# Registries missing from access count zero pulls.
_pulls(registry) := pulls if {
	pulls := _access[registry.region]
	is_number(pulls)
} else := 0

_cost(registry) := cost if {
	cost := registry.egress_cost_per_gb
	is_number(cost)
} else := 0

# METADATA
# description: Registry names in rank order (pulls desc, egress cost asc, name asc).
ranked(registries) := [key[2] | some key in sort([[0 - _pulls(registry), _cost(registry), registry.name] |
	some registry in registries
])]

# METADATA
# description: Estimated replication cost of sending the image to the given registries.
estimated_cost(registries) := (_size_bytes / 1000000000) * sum([_cost(registry) | some registry in registries])

# Egress costs are non-negative, so the cheapest set that keeps the mandatory registries is
# exactly those registries: every extra one only adds cost.
_keep(0, _, _)

_keep(_, name, required) if name in required

# METADATA
# scope: document
# description: >-
#   Plan for the routable registries: {routes: names in rank order, dropped: set of names
#   removed by cost consolidation}. required holds the compliance-required names.
plan(registries, _) := {"routes": order, "dropped": set()} if {
	order := ranked(registries)
	estimated_cost(registries) <= _threshold
}

plan(registries, required) := {"routes": kept, "dropped": dropped} if {
	estimated_cost(registries) > _threshold
	order := ranked(registries)
	kept := [name | some index, name in order; _keep(index, name, required)]
	dropped := {name | some name in order} - {name | some name in kept}
}
