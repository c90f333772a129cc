# METADATA
# title: Retention
# description: >-
#   DESIGN 3.4 (US5.1): POST /v1/data/replication/retention with {now, tenant, images} answers
#   {delete, bytes_freed, reasons}. Under the limit nothing is deleted. Over it (QUOTA_EXCEEDED),
#   the tenant's copies older than older_than_days and beyond the keep_last newest of their
#   registry and repository are deleted, least recently pulled first, then oldest, until the
#   projected usage is at or below the limit or no candidate is left (RETENTION_EXHAUSTED).
#   The work is in replication.lib.retention, so this document holds only those three fields.
# scope: package
# custom:
#   id: replication.retention
package replication.retention

import rego.v1

import data.replication.lib.retention as plan

# METADATA
# description: The copies to delete, in deletion order, each with its reason.
delete := [{
	"registry": image.registry,
	"repository": image.repository,
	"tag": image.tag,
	"digest": image.digest,
	"reason": "QUOTA_EXCEEDED",
} |
	some index in plan.deleted
	image := input.images[index]
]

# METADATA
# description: The bytes the deletions free (the sum of their size_bytes).
bytes_freed := plan.freed

# METADATA
# description: One entry per code used, sorted by code, each with its message.
reasons := [{"code": code, "message": plan.messages[code]} | some code in plan.codes]
