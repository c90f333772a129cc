# METADATA
# title: Batch decisions
# description: >-
#   One query for many decisions (the reconciler's bulk path, issue 13): input.items holds DESIGN
#   3.1 inputs, and decisions holds the DESIGN 3.2 decision of each, in the same order. Each item
#   is evaluated exactly as a single POST /v1/data/replication/decision would evaluate it.
#   The package holds no other rule, so POST /v1/data/replication/batch answers exactly
#   {"decisions": [...]} (an object, as the sidecar's engine expects).
# scope: package
# custom:
#   id: replication.batch
package replication.batch

import rego.v1

# METADATA
# description: The decision of each input.items entry, in order ([] without items).
decisions := [_decide(item) | some item in _array(input.items)]

_decide(item) := decision if {
	decision := data.replication.decision with input as item
}

# A function, not a rule: a rule would be part of the package document and echo the input back.
_array(value) := value if is_array(value)

else := []
