# METADATA
# title: Shared helpers
# description: >-
#   The input lookups every replication concern repeats: the source registry, the registries
#   that are destinations, a registry's environment, the image's labels and tenant. Emits no
#   reason code and never appears in a decision's policies.
# scope: package
# custom:
#   id: replication.lib
package replication.lib

import rego.v1

# Without a source registry every inventory registry is a destination; checks still apply.
default source := ""

# METADATA
# scope: document
# description: Name of the image's source registry, "" when the input names none.
source := input.image.registry

# METADATA
# description: >-
#   Every inventory registry but the source, in inventory order; a registry without a name is
#   no destination.
destinations := [registry |
	some registry in input.registries
	registry.name != source
]

# METADATA
# description: The environment a registry declares, "" when it declares none.
environment_of(registry) := object.get(registry, "environment", "")

# Built once per decision: the concern packages look destinations up by name or environment
# instead of each walking the whole inventory again.
# METADATA
# description: Names of the destinations (every named inventory registry but the source).
destination_names contains registry.name if some registry in destinations

# METADATA
# description: Destination names by the environment they declare ("" when none).
destinations_by_environment[environment] contains registry.name if {
	some registry in destinations
	environment := environment_of(registry)
}

default labels := {}

# METADATA
# scope: document
# description: The image's labels, {} when the input has none.
labels := input.image.labels

# METADATA
# description: >-
#   A tenant id, or undefined for "no tenant": anything but a non-empty string. An empty string
#   means "no tenant" (proto3 cannot send null), exactly like null.
tenant_of(value) := value if {
	is_string(value)
	value != ""
}

default image_tenant := null

# METADATA
# scope: document
# description: The image's tenant id, or null when the image belongs to no tenant.
image_tenant := tenant_of(input.image.tenant)
