# METADATA
# title: Admin and data-plane authorisation
# description: >-
#   Authorises PolicyAdmin calls, and PolicyService calls when policy.auth is configured (actions
#   Decide, DecideStream, Replicate, GetJob, ListJobs, WatchJob, ResolvePull, Explain; the sidecar
#   then derives the decision's caller from tenants/platform below and confines tenant callers to
#   their tenant's jobs, decisions and registries). The sidecar authenticates the caller (client
#   certificate or bearer token) and asks with input {caller: {subject, names, method}, action,
#   target}. Roles come only from bundle data: data.system.bindings maps a caller name (certificate
#   subject DN, a SAN as "DNS:…"/"URI:…"/"email:…", or "token:<name>") to {roles, tenant}, and
#   data.system.roles maps a role to the actions it grants ("*" = all). A tenant-scoped role
#   (tenant-admin) acts only when the target touches its own tenant and nothing global.
# scope: package
# custom:
#   id: system.authz
package system.authz

import rego.v1

# Tenant-scoped roles never act across tenants, whatever the role map grants them.
_tenant_scoped := {"tenant-admin"}

default _roles := {}

_roles := data.system.roles

default _bindings := {}

_bindings := data.system.bindings

_names := [name | some name in input.caller.names; is_string(name)]

# Each binding of one of the caller's names; the same caller may hold several.
_caller_bindings contains binding if {
	some name in _names
	binding := _bindings[name]
	is_object(binding)
}

_binding_roles(binding) := {role | some role in binding.roles; is_string(role)}

# METADATA
# scope: document
# description: Every role the caller holds through its bindings (reported in audit and errors).
roles contains role if {
	some binding in _caller_bindings
	some role in _binding_roles(binding)
}

_grants(role) if {
	some granted in _roles[role]
	granted in {"*", input.action}
}

# Targets list the tenants whose data they touch and whether anything global changes.
_in_tenant_scope(binding) if {
	is_string(binding.tenant)
	binding.tenant != ""
	not input.target.global
	count(input.target.tenants) > 0
	every tenant in input.target.tenants {
		tenant == binding.tenant
	}
}

_binding_allows(binding) if {
	some role in _binding_roles(binding)
	not role in _tenant_scoped
	_grants(role)
}

_binding_allows(binding) if {
	_in_tenant_scope(binding)
	some role in _binding_roles(binding)
	role in _tenant_scoped
	_grants(role)
}

# METADATA
# scope: document
# description: True when the caller may perform input.action on input.target.
default allow := false

allow if {
	some binding in _caller_bindings
	_binding_allows(binding)
}

_bound_tenant(binding) if {
	is_string(binding.tenant)
	binding.tenant != ""
}

# METADATA
# scope: document
# description: >-
#   The tenants the caller's bindings name; a data-plane caller acts for one of these (its
#   request's caller.tenant may pick one, never another).
tenants contains binding.tenant if {
	some binding in _caller_bindings
	_bound_tenant(binding)
}

# METADATA
# scope: document
# description: True when one of the caller's bindings names no tenant, so it acts for the platform.
default platform := false

platform if {
	some binding in _caller_bindings
	not _bound_tenant(binding)
}
