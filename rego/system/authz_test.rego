package system.authz_test

import rego.v1

import data.system.authz

_roles := {
	"viewer": ["ListRevisions", "GetAuditLog", "Explain"],
	"policy-author": ["ListRevisions", "GetAuditLog", "Explain", "ValidateBundle", "PublishBundle"],
	"policy-admin": ["*"],
	"tenant-admin": ["ListRevisions", "GetAuditLog", "Explain", "ValidateBundle", "PublishBundle"],
}

_bindings := {
	"CN=viewer": {"roles": ["viewer"]},
	"token:author": {"roles": ["policy-author"]},
	"URI:spiffe://corp/admin": {"roles": ["policy-admin"]},
	"token:acme-admin": {"roles": ["tenant-admin"], "tenant": "acme"},
	"token:no-tenant": {"roles": ["tenant-admin"]},
	"token:odd": {"roles": [7, null, "viewer"]},
	"token:junk": "not a binding",
}

_global := {"tenants": [], "global": true}

_allowed(names, action, target) if {
	authz.allow with input as {"caller": {"subject": names[0], "names": names}, "action": action, "target": target}
		with data.system.roles as _roles
		with data.system.bindings as _bindings
}

test_default_denies if {
	not authz.allow with input as {}
	not _allowed(["CN=nobody"], "ListRevisions", _global)
}

test_viewer_reads_only if {
	_allowed(["CN=viewer"], "ListRevisions", _global)
	_allowed(["CN=viewer"], "GetAuditLog", _global)
	not _allowed(["CN=viewer"], "PublishBundle", _global)
	not _allowed(["CN=viewer"], "Rollback", _global)
	not _allowed(["CN=viewer"], "ValidateBundle", _global)
}

test_policy_author_publishes_but_cannot_roll_back if {
	_allowed(["token:author"], "PublishBundle", _global)
	_allowed(["token:author"], "ValidateBundle", _global)
	not _allowed(["token:author"], "Rollback", _global)
}

test_policy_admin_does_everything_through_a_san if {
	_allowed(["CN=admin", "URI:spiffe://corp/admin"], "Rollback", _global)
	_allowed(["CN=admin", "URI:spiffe://corp/admin"], "AnythingNew", _global)
	not _allowed(["CN=admin"], "Rollback", _global)
}

test_tenant_admin_publishes_its_own_tenant_only if {
	_allowed(["token:acme-admin"], "PublishBundle", {"tenants": ["acme"], "global": false})
	not _allowed(["token:acme-admin"], "PublishBundle", {"tenants": ["globex"], "global": false})
	not _allowed(["token:acme-admin"], "PublishBundle", {"tenants": ["acme", "globex"], "global": false})
	not _allowed(["token:acme-admin"], "PublishBundle", {"tenants": ["acme"], "global": true})
	not _allowed(["token:acme-admin"], "PublishBundle", _global)
	not _allowed(["token:acme-admin"], "Rollback", {"tenants": ["acme"], "global": false})
}

test_tenant_admin_reads_its_own_tenant if {
	_allowed(["token:acme-admin"], "GetAuditLog", {"tenants": ["acme"], "global": false})
	not _allowed(["token:acme-admin"], "GetAuditLog", _global)
	not _allowed(["token:acme-admin"], "GetAuditLog", {})
}

test_tenant_admin_without_tenant_denied if {
	not _allowed(["token:no-tenant"], "GetAuditLog", {"tenants": ["acme"], "global": false})
}

test_malformed_bindings_and_roles_ignored if {
	_allowed(["token:odd"], "ListRevisions", _global)
	not _allowed(["token:junk"], "ListRevisions", _global)
	not _allowed([7], "ListRevisions", _global)
}

test_roles_reports_the_callers_roles if {
	got := authz.roles with input as {"caller": {"names": ["CN=viewer", "token:author"]}}
		with data.system.bindings as _bindings
	got == {"viewer", "policy-author"}
}

test_roles_come_from_data_not_input if {
	not authz.allow with input as {"caller": {"names": ["CN=x"], "roles": ["policy-admin"]}, "action": "Rollback"}
		with data.system.roles as _roles
		with data.system.bindings as _bindings
}
