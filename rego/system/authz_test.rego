package system.authz_test

import rego.v1

import data.system.authz

_call(roles, action) := {
	"caller": {"subject": "someone", "tenant": null, "roles": roles},
	"action": action,
	"target": {},
}

_tenant_call(caller_tenant, target_tenant, action) := {
	"caller": {"subject": "acme-admin", "tenant": caller_tenant, "roles": ["tenant-admin"]},
	"action": action,
	"target": {"tenant": target_tenant},
}

test_default_denies if {
	not authz.allow with input as {}
	not authz.allow with input as _call([], "ListRevisions")
}

test_viewer_reads if {
	authz.allow with input as _call(["viewer"], "ListRevisions")
	authz.allow with input as _call(["viewer"], "GetAuditLog")
	authz.allow with input as _call(["viewer"], "Explain")
}

test_viewer_cannot_publish if {
	not authz.allow with input as _call(["viewer"], "PublishBundle")
	not authz.allow with input as _call(["viewer"], "Rollback")
}

test_policy_author_publishes_and_validates if {
	authz.allow with input as _call(["policy-author"], "PublishBundle")
	authz.allow with input as _call(["policy-author"], "ValidateBundle")
	not authz.allow with input as _call(["policy-author"], "Rollback")
}

test_policy_admin_does_everything if {
	authz.allow with input as _call(["policy-admin"], "Rollback")
	authz.allow with input as _call(["policy-admin"], "AnythingNew")
}

test_any_granting_role_suffices if {
	authz.allow with input as _call(["unknown", "viewer"], "Explain")
}

test_unknown_role_denied if {
	not authz.allow with input as _call(["root"], "Explain")
}

test_non_string_roles_ignored if {
	not authz.allow with input as _call([7, null], "Explain")
}

test_tenant_admin_acts_on_own_tenant if {
	authz.allow with input as _tenant_call("acme", "acme", "GetAuditLog")
}

test_tenant_admin_denied_on_other_tenant if {
	not authz.allow with input as _tenant_call("acme", "globex", "GetAuditLog")
	not authz.allow with input as _tenant_call("acme", null, "GetAuditLog")
}

test_tenant_admin_without_tenant_denied if {
	not authz.allow with input as _tenant_call(null, null, "GetAuditLog")
	not authz.allow with input as _tenant_call("", "", "GetAuditLog")
}

test_tenant_admin_limited_to_granted_actions if {
	not authz.allow with input as _tenant_call("acme", "acme", "PublishBundle")
}

test_role_map_from_data if {
	authz.allow with input as _call(["auditor"], "GetAuditLog") with data.system.roles as {"auditor": ["GetAuditLog"]}
	not authz.allow with input as _call(["viewer"], "Explain") with data.system.roles as {"auditor": ["GetAuditLog"]}
}
