# METADATA
# title: Cacheable decision
# description: >-
#   The decision of DESIGN 3.2 plus what a decision cache needs to keep it without ever being
#   wrong (issue 18): the instants at which the same facts would get another decision because
#   input.now crossed them (a scan becoming too old). The sidecar queries this package instead
#   of data.replication.decision only when policy.decision_cache is enabled; decision is that
#   very document, evaluated once. The package holds no other rule, so
#   POST /v1/data/replication/cacheable answers exactly {"decision": ..., "time_boundaries_ns": [...]}.
# scope: package
# custom:
#   id: replication.cacheable
package replication.cacheable

import rego.v1

import data.replication.scan

# METADATA
# description: The decision, exactly as POST /v1/data/replication/decision answers it.
decision := data.replication.decision

# METADATA
# description: >-
#   Sorted instants (ns since the epoch) where the decision may change with input.now alone;
#   [] when it cannot (then only new facts or a new bundle revision change it).
time_boundaries_ns := sort([boundary | some boundary in scan.time_boundaries])
