# METADATA
# title: Time boundaries ahead
# description: >-
#   For the reconciler's expiry trigger (issue 13, "when a scan expires"): input.items holds
#   DESIGN 3.1 inputs, as for replication.batch, and next_ns holds, for each in the same order,
#   the earliest instant (ns since the epoch) strictly after that item's now at which its
#   decision changes with time alone (replication.cacheable's time_boundaries_ns: a scan
#   expiring), or null when none lies ahead. The instants come from the policy, so a bundle's
#   maximum scan age is the only one. The package holds no other rule, so
#   POST /v1/data/replication/expiry answers exactly {"next_ns": [...]}.
# scope: package
# custom:
#   id: replication.expiry
package replication.expiry

import rego.v1

# METADATA
# description: Each input.items entry's next time boundary after its now, or null ([] without items).
next_ns := [_next(item) | some item in _array(input.items)]

_next(item) := min(ahead) if {
	now := time.parse_rfc3339_ns(item.now)
	ahead := {boundary | some boundary in _boundaries(item); boundary > now}
	count(ahead) > 0
} else := null

_boundaries(item) := boundaries if {
	boundaries := data.replication.cacheable.time_boundaries_ns with input as item
}

# A function, not a rule: a rule would be part of the package document and echo the input back.
_array(value) := value if is_array(value)

else := []
