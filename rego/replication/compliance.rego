# METADATA
# title: GDPR residency
# description: >-
#   An image labelled compliance-required=true stays inside GDPR registries: every non-GDPR
#   registry is denied NOT_GDPR, and every GDPR registry is compliance-required (cost
#   consolidation keeps it).
# scope: package
# custom:
#   id: replication.compliance
package replication.compliance

import rego.v1

default _label := "compliance-required"

_label := data.replication.settings.compliance.label

# Without a source registry every inventory registry is a destination; checks still apply.
default _source := ""

_source := input.image.registry

# METADATA
# description: True when the image carries the compliance label set to "true".
restricted if input.image.labels[_label] == "true"

_gdpr(registry) if registry.gdpr == true

# METADATA
# description: One NOT_GDPR denial per non-GDPR registry of a restricted image.
deny contains {"registry": registry.name, "code": "NOT_GDPR"} if {
	restricted
	some registry in input.registries
	registry.name != _source
	not _gdpr(registry)
}

# METADATA
# description: GDPR registries a restricted image must keep, whatever the cost.
required contains registry.name if {
	restricted
	some registry in input.registries
	registry.name != _source
	_gdpr(registry)
}
