# METADATA
# title: Replication decision
# description: >-
#   Composes the DESIGN 3.2 decision from the concern packages: every registry but the source
#   lands in exactly one of routes, denied (a denial always beats a route) or deferred; allow is
#   false only for SCAN_EXPIRED and CROSS_TENANT, and then every registry is denied with those
#   codes alone. remove (DESIGN 3.4) is the part of denied that holds a copy now and must lose
#   it. Every field is always present, whatever parts of the input are missing.
# scope: package
# custom:
#   id: replication.decision
package replication

import rego.v1

import data.replication.compliance
import data.replication.customers
import data.replication.dr
import data.replication.environment
import data.replication.legacy
import data.replication.lib
import data.replication.placement
import data.replication.priority
import data.replication.removal
import data.replication.ruleset
import data.replication.scan
import data.replication.tenancy

# Which package a reason code comes from (a code belongs to one package only); any other code is
# an explicit rule's denial code: replication.rules. Spelled out, not derived from the packages'
# reasons: a derived object was rebuilt for every decision (and every item of a batch).
# decision_test.rego checks it against the packages.
_owners := {
	"CROSS_TENANT": "replication.tenancy",
	"COST_CONSOLIDATED": "replication.placement",
	"CUSTOMER_NOT_ALLOWED": "replication.customers",
	"ENV_MISMATCH": "replication.environment",
	"FAILOVER_SECONDARY": "replication.dr",
	"LEGACY_RULE": "replication.legacy",
	"NOT_GDPR": "replication.compliance",
	"QUOTA_EXCEEDED": "replication.tenancy",
	"REGISTRY_UNAVAILABLE": "replication.dr",
	"SCAN_EXPIRED": "replication.scan",
	"SCAN_FAILED": "replication.scan",
	"SCAN_MISSING": "replication.scan",
	"SECONDARY_STANDBY": "replication.dr",
	"TENANT_ISOLATION": "replication.tenancy",
}

default _repository := ""

_repository := input.image.repository

default _tag := ""

_tag := input.image.tag

# Keyed by name: every later lookup is a key access, never a scan of the inventory. A complete
# rule: as a partial one, each lookup by a bound name ran its body (a walk of the inventory) again.
# regal ignore:prefer-set-or-object-rule
_others := {registry.name: registry |
	some registry in input.registries
	is_string(registry.name)
	registry.name != lib.source
}

_denials := ((((environment.deny | compliance.deny) | scan.deny) | dr.deny) | tenancy.deny) | customers.deny

_registry_codes[denial.registry] contains denial.code if {
	some denial in (_denials | ruleset.deny)
	_others[denial.registry]
}

# Evaluated once in full: a lookup in a partial rule by a bound key re-runs its body.
# regal ignore:prefer-set-or-object-rule
_codes := {name: codes | some name, codes in _registry_codes}

_blocking := scan.blocking | tenancy.blocking

default _allow := false

_allow if count(_blocking) == 0

# Passed every check: routed when healthy, deferred when not (a denial always wins).
_passed[name] := registry if {
	_allow
	some name, registry in _others
	not _codes[name]
}

_routable := [registry | some name, registry in _passed; not name in dr.unhealthy]

_deferred_names contains name if {
	some name, _ in _passed
	name in dr.unhealthy
}

default _plan := {"routes": [], "dropped": set()}

_plan := placement.plan(_routable, compliance.required) if _allow

# Each denied registry's codes (never an empty set), built once for all registries: every one
# with the blocking codes when the decision is not allowed, else its denials plus
# COST_CONSOLIDATED where consolidation dropped it (usually nowhere: then the denials as they are).
_denial_codes := {name: _blocking | some name, _ in _others} if {
	not _allow
} else := _codes if {
	count(_plan.dropped) == 0
} else := {name: codes |
	some name, _ in _others
	codes := object.get(_codes, name, set()) | {"COST_CONSOLIDATED" | name in _plan.dropped}
	count(codes) > 0
}

_rule_template := template if {
	template := ruleset.destination_repository
	is_string(template)
}

_rule_repository := strings.replace_n({"{repository}": _repository, "{tag}": _tag}, _rule_template) if {
	_rule_template
} else := _repository

# Route target: a legacy rule's destination, else the winning rule template, else the image's own.
_targets[name] := {"repository": route.repository, "tag": route.tag} if {
	some name in _plan.routes
	route := legacy.routes[name]
}

_targets[name] := {"repository": _rule_repository, "tag": _tag} if {
	some name in _plan.routes
	not legacy.routes[name]
}

_routes := [route |
	some index, name in _plan.routes
	route := object.union(_targets[name], {"registry": name, "rank": index + 1})
]

_denied := [{"registry": name, "reasons": sort(_denial_codes[name])} | some name in sort(object.keys(_denial_codes))]

_deferred := [{"registry": name, "reason": "REGISTRY_UNAVAILABLE"} | some name in sort(_deferred_names)]

_actions := [action | some action in tenancy.actions]

# A subset of denied: only registries present_at names, only for prune codes.
_remove := removal.remove(_denied)

_routed contains route.registry if some route in _routes

_used_codes contains code if {
	some denial in _denied
	some code in denial.reasons
}

_used_codes contains "REGISTRY_UNAVAILABLE" if count(_deferred) > 0

_used_codes contains "FAILOVER_SECONDARY" if some name in (_routed & dr.failover)

_used_codes contains "LEGACY_RULE" if {
	some name in _routed
	legacy.routes[name]
}

_used_codes contains "QUOTA_EXCEEDED" if count(_actions) > 0

_used_codes contains code if some code in _blocking

_message(code) := message if {
	message := _package_reasons(_owners[code])[code]
} else := ruleset.message(code)

# The reason codes (with their messages) of a package, by policy id. One clause per package,
# picked by the rule index: only the owner's reasons are evaluated, not all eight per decision.
_package_reasons("replication.compliance") := compliance.reasons

_package_reasons("replication.customers") := customers.reasons

_package_reasons("replication.dr") := dr.reasons

_package_reasons("replication.environment") := environment.reasons

_package_reasons("replication.legacy") := legacy.reasons

_package_reasons("replication.placement") := placement.reasons

_package_reasons("replication.scan") := scan.reasons

_package_reasons("replication.tenancy") := tenancy.reasons

_reasons := [{"code": code, "message": _message(code)} | some code in sort(_used_codes)]

_policies contains "replication.decision"

# The priority package always supplies the decision's priority value.
_policies contains "replication.priority"

_policies contains object.get(_owners, code, "replication.rules") if some code in _used_codes

_policies contains "replication.placement" if count(_routes) > 0

_policies contains "replication.removal" if count(_remove) > 0

# A rule contributed when one of its denials stands or it set a value the decision used.
_policies contains "replication.rules" if {
	some denial in ruleset.deny
	denial.code in _codes[denial.registry]
}

_policies contains "replication.rules" if priority.from_rule

_policies contains "replication.rules" if {
	_rule_template
	some route in _routes
	not legacy.routes[route.registry]
}

_policies contains "replication.rules" if {
	count(_actions) > 0
	ruleset.retention
}

# METADATA
# title: decision
# description: The replication decision document of DESIGN 3.2 for input.
# entrypoint: true
decision := {
	"allow": _allow,
	"priority": priority.value,
	"routes": _routes,
	"denied": _denied,
	"deferred": _deferred,
	"actions": _actions,
	"remove": _remove,
	"reasons": _reasons,
	"policies": sort(_policies),
}
