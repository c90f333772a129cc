# METADATA
# title: Tenancy
# description: >-
#   Registries dedicated to other tenants are denied TENANT_ISOLATION; a caller acting for another
#   tenant blocks the decision (CROSS_TENANT); a tenant over its storage limit gets a cleanup
#   action from its winning retention settings (QUOTA_EXCEEDED).
# scope: package
# custom:
#   id: replication.tenancy
package replication.tenancy

import rego.v1

import data.replication.lib
import data.replication.ruleset

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {
	"CROSS_TENANT": "the caller acts for a different tenant than the image's",
	"QUOTA_EXCEEDED": "tenant storage exceeds its limit; cleanup scheduled",
	"TENANT_ISOLATION": "registry is dedicated to other tenants",
}

_default_retention := {"keep_last": 10, "older_than_days": 30}

default _settings_retention := {}

_settings_retention := data.replication.settings.retention

# METADATA
# description: The image's tenant id, or null when the image belongs to no tenant.
image_tenant := lib.image_tenant

default caller_tenant := null

# METADATA
# scope: document
# description: The caller's tenant id, or null for a platform caller.
caller_tenant := lib.tenant_of(input.caller.tenant)

# METADATA
# description: One TENANT_ISOLATION denial per registry dedicated only to other tenants.
deny contains {"registry": registry.name, "code": "TENANT_ISOLATION"} if {
	some registry in lib.destinations
	count(registry.tenants) > 0 # dedicated to other tenants (inline: a call per registry costs)
	not image_tenant in registry.tenants
}

# METADATA
# description: Codes that make allow false for the whole decision.
blocking contains "CROSS_TENANT" if {
	caller_tenant != null
	caller_tenant != image_tenant
}

# METADATA
# description: True when the tenant's usage exceeds a positive storage limit.
over_quota if {
	limit := input.tenant.storage_limit_bytes
	limit > 0
	input.tenant.storage_used_bytes > limit
}

default _tenant_retention := {}

_tenant_retention := data.replication.tenants[input.tenant.id].retention

default _rule_retention := {}

_rule_retention := ruleset.retention

# METADATA
# description: The retention in force; settings, then the tenant's own, then the winning rule.
retention := object.union_n([_default_retention, _settings_retention, _tenant_retention, _rule_retention])

# METADATA
# description: One cleanup action for a tenant over quota.
actions contains action if {
	over_quota
	action := {
		"type": "cleanup",
		"tenant": input.tenant.id,
		"keep_last": retention.keep_last,
		"older_than_days": retention.older_than_days,
	}
}
