# METADATA
# title: Retention planning
# description: >-
#   The work behind replication.retention (DESIGN 3.4, US5.1): a tenant's retention settings,
#   which of its copies are candidates (older than older_than_days and beyond the keep_last
#   newest of their registry and repository), in deletion order (least recently pulled first,
#   then oldest, then registry, repository, tag, digest), and how many of them bring the
#   projected usage down to the limit. Kept apart so that the retention document holds only
#   its three fields.
# scope: package
# custom:
#   id: replication.lib.retention
package replication.lib.retention

import rego.v1

# METADATA
# description: The codes the retention query emits, each with its message.
messages := {
	"QUOTA_EXCEEDED": "tenant storage exceeds its limit; copies deleted by its retention settings",
	"RETENTION_EXHAUSTED": "every copy the retention settings let go is deleted; usage still exceeds the limit",
}

_defaults := {"keep_last": 10, "older_than_days": 30}

default _settings := {}

_settings := data.replication.settings.retention if is_object(data.replication.settings.retention)

_tenant(id) := retention if {
	retention := data.replication.tenants[id].retention
	is_object(retention)
} else := {}

# METADATA
# description: The retention in force for a tenant id; built-in defaults, settings, the tenant's own.
settings(id) := object.union_n([_defaults, _settings, _tenant(id)])

default tenant_id := null

# METADATA
# scope: document
# description: The tenant the retention query is about, null when the input names none.
tenant_id := input.tenant.id if {
	is_string(input.tenant.id)
	input.tenant.id != ""
}

_count(value) := value if {
	is_number(value)
	value >= 0
} else := 0

default used := 0

# METADATA
# scope: document
# description: Bytes the tenant stores now (0 when unknown).
used := _count(input.tenant.storage_used_bytes)

default limit := 0

# METADATA
# scope: document
# description: The tenant's storage limit in bytes (0 = no limit).
limit := _count(input.tenant.storage_limit_bytes)

# METADATA
# description: True when the tenant's usage exceeds a positive limit.
over_quota if {
	limit > 0
	used > limit
}

_retention := settings(tenant_id)

_day_ns := ((24 * 60) * 60) * 1000000000

# Copies created before this instant are old enough to go.
_cutoff := time.parse_rfc3339_ns(input.now) - (_count(_retention.older_than_days) * _day_ns)

_created(image) := time.parse_rfc3339_ns(image.created_at)

# A copy never pulled sorts before every pulled one; an unreadable time keeps the copy.
_pulled(image) := 0 if {
	object.get(image, "last_pulled_at", null) == null
} else := time.parse_rfc3339_ns(image.last_pulled_at)

# Computed once as a whole: as a partial object rule every lookup evaluated its body again (2 s
# of a 10,000-copy query, measured with opa eval --profile).
# regal ignore:prefer-set-or-object-rule
_images := {index: image |
	some index, image in input.images
	is_string(image.registry)
	is_string(image.repository)
	is_string(image.tag)
	is_string(image.digest)
}

# Newest first within each registry and repository; a copy without a readable created_at sorts
# as the newest, so it counts among the ones kept.
_newest_first := sort([[image.registry, image.repository, 0 - _age(image), image.tag, image.digest, index] |
	some index, image in _images
])

_age(image) := _created(image) if _created(image)

else := 9223372036854775807

# A copy is beyond the keep_last newest of its registry and repository exactly when the copy
# keep_last places before it in that order is of the same registry and repository: no grouping.
_beyond contains entry[5] if {
	kept := _count(_retention.keep_last)
	some position, entry in _newest_first
	earlier := _newest_first[position - kept]
	[earlier[0], earlier[1]] == [entry[0], entry[1]]
}

_candidates contains index if {
	some index, image in _images
	index in _beyond
	_created(image) < _cutoff
	_pulled(image)
}

# METADATA
# description: Candidate indexes of input.images in deletion order.
order := [key[6] | some key in sort(_order_keys)]

_order_keys := [[_pulled(image), _created(image), image.registry, image.repository, image.tag, image.digest, index] |
	some index in _candidates
	image := _images[index]
]

# METADATA
# description: The size of input.images[index] in bytes (0 when not a non-negative number).
size(index) := _count(_images[index].size_bytes)

_sizes := [size(index) | some index in order]

# Prefix sums in blocks of _block: a prefix is one block sum plus at most _block sizes, so n
# candidates cost about n * _block / 2 + (n / _block)^2 / 2 additions instead of n^2 / 2.
_block := 64

default _block_sums := []

_block_sums := [sum(array.slice(_sizes, start, start + _block)) |
	some start in numbers.range_step(0, count(_sizes) - 1, _block)
] if {
	count(_sizes) > 0
}

_before_block := [sum(array.slice(_block_sums, 0, block)) | some block, _ in _block_sums]

# Bytes of the candidates that come before position k.
_before(k) := _before_block[block] + sum(array.slice(_sizes, block * _block, k)) if {
	block := floor(k / _block)
}

# METADATA
# description: >-
#   The candidates deleted, in order: each one is deleted while the usage left before it
#   still exceeds the limit (sizes are never negative, so these form a prefix of order).
deleted := [index |
	over_quota
	some k, index in order
	used - _before(k) > limit
]

# METADATA
# description: Bytes the deleted candidates free.
freed := sum([size(index) | some index in deleted])

_codes contains "QUOTA_EXCEEDED" if over_quota

_codes contains "RETENTION_EXHAUSTED" if {
	over_quota
	used - freed > limit
}

# METADATA
# description: The codes of the answer, sorted.
codes := sort(_codes)
