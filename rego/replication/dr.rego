# METADATA
# title: Disaster recovery
# description: >-
#   A secondary registry (role secondary, backs P) receives images only while its primary P is
#   unhealthy; otherwise it is denied SECONDARY_STANDBY. Unhealthy registries are reported so the
#   decision can defer them (REGISTRY_UNAVAILABLE) instead of routing to them.
# scope: package
# custom:
#   id: replication.dr
package replication.dr

import rego.v1

import data.replication.lib

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {
	"FAILOVER_SECONDARY": "primary registry is unhealthy; its secondary receives the image",
	"REGISTRY_UNAVAILABLE": "registry is unhealthy; replication deferred until it recovers",
	"SECONDARY_STANDBY": "secondary registry stands by while its primary is healthy",
}

# Registry health defaults to healthy: only an explicit false marks a registry unavailable.
# METADATA
# description: Names of the inventory registries that are unhealthy right now.
unhealthy contains registry.name if {
	some registry in input.registries
	registry.healthy == false
}

# METADATA
# description: Names of the secondary registries in the inventory.
secondaries contains registry.name if {
	some registry in input.registries
	registry.role == "secondary"
}

_inventory contains registry.name if some registry in input.registries

# METADATA
# description: Secondaries whose primary is in the inventory and unhealthy (failover active).
failover contains registry.name if {
	some registry in input.registries
	registry.role == "secondary"
	primary := registry.backs
	primary in _inventory
	primary in unhealthy
}

# METADATA
# description: One SECONDARY_STANDBY denial per secondary whose primary is healthy or unknown.
deny contains {"registry": name, "code": "SECONDARY_STANDBY"} if {
	some name in secondaries
	name != lib.source
	not name in failover
}
