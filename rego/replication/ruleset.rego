# METADATA
# title: Explicit rules
# description: >-
#   Global rules (data.replication.rules) and the image tenant's rules
#   (data.replication.tenants[tenant].rules) that match the image, plus every rule they chain to.
#   Where active rules disagree on a value the highest priority wins, equal priorities resolve to
#   the smallest id; every rule denial applies (a denial always beats a route).
#   The package is not named replication.rules because data.replication.rules holds the global
#   rule list and OPA refuses a package and base data at one path; its policy id stays
#   replication.rules.
# scope: package
# custom:
#   id: replication.rules
package replication.ruleset

import rego.v1

import data.replication.environment
import data.replication.lib

default _global := []

_global := data.replication.rules

# Only the image's own tenant is looked up (by key): other tenants' rules are never iterated.
default _tenant_rules := []

_tenant_rules := data.replication.tenants[lib.image_tenant].rules

_rules := [rule |
	some rule in array.concat(_global, _tenant_rules)
	is_string(rule.id)
]

# A complete rule: every later _by_id[id] is a key access (a partial rule re-ran its body per id).
# regal ignore:prefer-set-or-object-rule
_by_id := {rule.id: rule | some rule in _rules}

_image := object.get(input, "image", {})

_repository := object.get(_image, "repository", "")

_tag := object.get(_image, "tag", "")

_repository_matches(match) if not match.repository

# "*" must not cross "/", like Freightliner's filepath.Match.
_repository_matches(match) if glob.match(match.repository, ["/"], _repository)

_tag_matches(match) if not match.tag

_tag_matches(match) if glob.match(match.tag, ["/"], _tag)

_environment_matches(match) if not match.environment

_environment_matches(match) if match.environment == environment.image_environment

_labels_match(match) if {
	every key, value in object.get(match, "labels", {}) {
		lib.labels[key] == value
	}
}

_matches(rule) if {
	match := object.get(rule, "match", {})
	_repository_matches(match)
	_tag_matches(match)
	_environment_matches(match)
	_labels_match(match)
}

# METADATA
# description: Ids of the rules whose match block matches the image.
matched contains rule.id if {
	some rule in _rules
	_matches(rule)
}

# Chains are acyclic (the bundle builder rejects cycles); graph.reachable follows them
# transitively without recursion. Only chains of matched rules seed the walk.
_graph[id] := [target | some target in object.get(_by_id[id], "chain", [])] if some id, _ in _by_id

# METADATA
# scope: document
# description: Ids of the rules in force, the matched ones and every rule they chain to.
active contains id if {
	_chained
	some id in graph.reachable(_graph, matched)
	_by_id[id]
}

# Most matched rules chain to nothing: then the active rules are the matched ones, and the chain
# graph of every rule is never built.
active contains id if {
	not _chained
	some id in matched
}

_chained if {
	some id in matched
	count(object.get(_by_id[id], "chain", [])) > 0
}

_priority(rule) := rule.priority if is_number(rule.priority)

else := 0

_winner(key) := ranked[0][1] if {
	ranked := sort([[0 - _priority(rule), id] |
		some id in active
		rule := _by_id[id]
		rule.set[key] != null
	])
	count(ranked) > 0
}

# METADATA
# description: The winning destination repository template, when an active rule sets one.
destination_repository := _by_id[_winner("destination_repository")].set.destination_repository

# METADATA
# description: The winning priority, when an active rule sets one.
priority := _by_id[_winner("priority")].set.priority

# METADATA
# description: The winning retention object, when an active rule sets one.
retention := _by_id[_winner("retention")].set.retention

# METADATA
# description: Ids of the rules whose values won a conflict.
winners contains _winner(key) if some key in ["destination_repository", "priority", "retention"]

# METADATA
# description: One denial per registry named in an active rule's deny list.
deny contains {"registry": entry.registry, "code": object.get(entry, "code", "RULE_DENIED")} if {
	some id in active
	some entry in object.get(_by_id[id], "deny", [])
	entry.registry != lib.source
}

# METADATA
# description: For each rule denial code, the ids of the active rules that used it.
denied_by[code] contains id if {
	some id in active
	some entry in object.get(_by_id[id], "deny", [])
	code := object.get(entry, "code", "RULE_DENIED")
}

# Rule denial codes are the rules' own (RULE_DENIED by default), so the message names the rules.
# METADATA
# description: The message of a rule denial code, naming the active rules that used it.
message(code) := sprintf("denied by explicit rule %s", [concat(", ", sort(denied_by[code]))])
