package system.authz_test

import rego.v1

import data.system.authz

_roles := {
	"viewer": ["ListRevisions", "GetAuditLog", "Explain"],
	"policy-author": ["ListRevisions", "GetAuditLog", "Explain", "ValidateBundle", "PublishBundle"],
	"policy-admin": ["*"],
	"tenant-admin": ["ListRevisions", "GetAuditLog", "Explain", "ValidateBundle", "PublishBundle"],
	"replicator": ["Decide", "DecideStream", "Replicate", "GetJob", "ListJobs", "WatchJob", "ResolvePull"],
	"auditor": ["Explain", "GetJob", "ListJobs", "WatchJob", "ListRevisions", "GetAuditLog"],
	"platform-admin": ["*"],
}

_bindings := {
	"CN=viewer": {"roles": ["viewer"]},
	"token:author": {"roles": ["policy-author"]},
	"URI:spiffe://corp/admin": {"roles": ["policy-admin"]},
	"token:acme-admin": {"roles": ["tenant-admin"], "tenant": "acme"},
	"token:no-tenant": {"roles": ["tenant-admin"]},
	"token:odd": {"roles": [7, null, "viewer"]},
	"token:junk": "not a binding",
	"unix:replicator": {"roles": ["replicator"]},
	"token:acme-ci": {"roles": ["replicator"], "tenant": "acme"},
	"CN=acme-ci": {"roles": ["replicator"], "tenant": "acme"},
	"URI:spiffe://corp/acme-ci": {"roles": ["auditor"], "tenant": "acme"},
	"token:auditor": {"roles": ["auditor"]},
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

_data_plane := ["Decide", "DecideStream", "Replicate", "GetJob", "ListJobs", "WatchJob", "ResolvePull"]

_query(names) := {"caller": {"subject": names[0], "names": names}, "action": "Decide", "target": {"tenants": []}}

test_replicator_calls_every_data_plane_method if {
	every action in _data_plane {
		_allowed(["unix:replicator"], action, {"tenants": [], "global": true})
	}
}

test_replicator_may_not_explain_or_administer if {
	not _allowed(["unix:replicator"], "Explain", _global)
	not _allowed(["unix:replicator"], "PublishBundle", _global)
}

test_auditor_explains_and_reads_jobs_but_does_not_decide if {
	_allowed(["token:auditor"], "Explain", _global)
	_allowed(["token:auditor"], "ListJobs", _global)
	not _allowed(["token:auditor"], "Decide", _global)
	not _allowed(["token:auditor"], "Replicate", _global)
}

test_platform_admin_may_call_everything if {
	every action in array.concat(_data_plane, ["Explain", "Rollback"]) {
		authz.allow with input as {"caller": {"names": ["token:platform"]}, "action": action, "target": _global}
			with data.system.roles as _roles
			with data.system.bindings as {"token:platform": {"roles": ["platform-admin"]}}
	}
}

test_a_tenant_replicator_is_confined_to_its_tenant if {
	_allowed(["token:acme-ci"], "Decide", {"tenants": ["acme"], "global": false})
	authz.tenants == {"acme"} with input as _query(["token:acme-ci"]) with data.system.bindings as _bindings
	not authz.platform with input as _query(["token:acme-ci"]) with data.system.bindings as _bindings
}

test_tenants_and_roles_gather_every_name_of_the_caller if {
	q := _query(["CN=acme-ci", "URI:spiffe://corp/acme-ci"])
	authz.tenants == {"acme"} with input as q with data.system.bindings as _bindings
	authz.roles == {"replicator", "auditor"} with input as q with data.system.bindings as _bindings
}

test_a_binding_without_tenant_acts_for_the_platform if {
	authz.platform with input as _query(["unix:replicator"]) with data.system.bindings as _bindings
	count(authz.tenants) == 0 with input as _query(["unix:replicator"]) with data.system.bindings as _bindings
	not authz.platform with input as _query(["CN=nobody"]) with data.system.bindings as _bindings
}
