# METADATA
# title: Admin API authorisation
# description: >-
#   Authorises PolicyAdmin and Explain calls: allowed when one of the caller's roles is granted the
#   action (or "*") in data.system.roles. A tenant-scoped role (tenant-admin) grants its actions
#   only on targets of the caller's own tenant.
# scope: package
# custom:
#   id: system.authz
package system.authz

import rego.v1

# Tenant-scoped roles never act across tenants, whatever the role map grants them.
_tenant_scoped := {"tenant-admin"}

default _roles := {}

_roles := data.system.roles

_caller_roles := [role | some role in input.caller.roles; is_string(role)]

_grants(role) if {
	some granted in _roles[role]
	granted in {"*", input.action}
}

_same_tenant if {
	is_string(input.caller.tenant)
	input.caller.tenant != ""
	input.target.tenant == input.caller.tenant
}

_role_allows(role) if {
	not role in _tenant_scoped
	_grants(role)
}

_role_allows(role) if {
	role in _tenant_scoped
	_grants(role)
	_same_tenant
}

# METADATA
# scope: document
# description: True when the caller may perform input.action on input.target.
default allow := false

allow if {
	some role in _caller_roles
	_role_allows(role)
}
