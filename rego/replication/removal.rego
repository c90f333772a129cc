# METADATA
# title: Removal
# description: >-
#   DESIGN 3.4: the copies to take away. A registry is removed when it holds the image now
#   (input.image.present_at), the decision denies it, and one of its denial codes is a prune
#   reason (data.replication.prune.reasons: NOT_GDPR, TENANT_ISOLATION, COST_CONSOLIDATED by
#   default). Codes that say "not now" or "not known" (SCAN_*, REGISTRY_UNAVAILABLE,
#   SECONDARY_STANDBY, ENV_MISMATCH, CROSS_TENANT, POLICY_UNAVAILABLE) never remove, whatever the
#   data says; the source registry is never removed. Emits no reason code of its own.
# scope: package
# custom:
#   id: replication.removal
package replication.removal

import rego.v1

import data.replication.lib

# The contract's default, also when bundle data predates data.replication.prune.
default _configured := ["NOT_GDPR", "TENANT_ISOLATION", "COST_CONSOLIDATED"]

_configured := data.replication.prune.reasons

# A scan can be redone, a registry recovers, a standby is needed in a failover, an environment
# mismatch is a routing choice and a cross-tenant caller says nothing about the copy itself:
# none of them is a reason to destroy a copy that exists.
_never := {
	"CROSS_TENANT",
	"ENV_MISMATCH",
	"POLICY_UNAVAILABLE",
	"REGISTRY_UNAVAILABLE",
	"SECONDARY_STANDBY",
}

_prunes(code) if {
	is_string(code)
	not startswith(code, "SCAN_")
	not code in _never
}

# METADATA
# description: The denial codes that take an existing copy away.
reasons contains code if {
	some code in _configured
	_prunes(code)
}

# METADATA
# description: The registries holding the image now, less the source; empty when not observed.
present contains name if {
	some name in input.image.present_at
	is_string(name)
	name != lib.source
}

# METADATA
# description: >-
#   The remove list for a decision's denied list: each present registry denied with a prune
#   code, with those codes (sorted), in the order of denied (by registry).
remove(denied) := [{"registry": denial.registry, "reasons": codes} |
	some denial in denied
	denial.registry in present
	codes := sort([code | some code in denial.reasons; code in reasons])
	count(codes) > 0
]
