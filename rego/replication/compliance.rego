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

import data.replication.lib

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {"NOT_GDPR": "compliance-required image may only go to GDPR registries"}

default _label := "compliance-required"

_label := data.replication.settings.compliance.label

# METADATA
# description: True when the image carries the compliance label set to "true".
restricted if lib.labels[_label] == "true"

_gdpr(registry) if registry.gdpr == true

# METADATA
# description: One NOT_GDPR denial per non-GDPR registry of a restricted image.
deny contains {"registry": registry.name, "code": "NOT_GDPR"} if {
	restricted
	some registry in lib.destinations
	not _gdpr(registry)
}

# METADATA
# description: GDPR registries a restricted image must keep, whatever the cost.
required contains registry.name if {
	restricted
	some registry in lib.destinations
	_gdpr(registry)
}
