# METADATA
# title: Legacy Freightliner rules
# description: >-
#   Freightliner ReplicationRules and sync configs, converted into data.replication.legacy.rules
#   at bundle build time, route an image to their destination registry with reason LEGACY_RULE.
#   A legacy rule is explicit intent: it lifts ENV_MISMATCH for its destination, while every
#   safety denial (scan, GDPR, tenancy, expiry) still applies.
# scope: package
# custom:
#   id: replication.legacy
package replication.legacy

import rego.v1

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {"LEGACY_RULE": "routed by a legacy Freightliner replication rule"}

default _rules := []

_rules := data.replication.legacy.rules

_image := object.get(input, "image", {})

_source := object.get(_image, "registry", "")

_repository := object.get(_image, "repository", "")

_tag := object.get(_image, "tag", "")

_inventory contains registry.name if some registry in input.registries

# Freightliner's MatchPattern: without "*" a pattern compares exactly, with "*" it is a
# filepath.Match glob in which "*" never crosses "/".
_pattern_matches(pattern, value) if {
	not contains(pattern, "*")
	pattern == value
}

_pattern_matches(pattern, value) if {
	contains(pattern, "*")
	glob.match(pattern, ["/"], value)
}

_tags_match(rule) if {
	tags := object.get(rule, "tags", [])
	_in_list_or_unconstrained(tags)
	_regex_or_unconstrained(object.get(rule, "tag_regex", ""))
	_filter_or_unconstrained(object.get(rule, "tag_filter", ""))
	_included(object.get(rule, "include_tags", []))
	not _excluded(object.get(rule, "exclude_tags", []))
}

_in_list_or_unconstrained(tags) if count(tags) == 0

_in_list_or_unconstrained(tags) if _tag in tags

_regex_or_unconstrained("")

_regex_or_unconstrained(pattern) if {
	pattern != ""
	regex.match(pattern, _tag)
}

_filter_or_unconstrained("")

_filter_or_unconstrained(pattern) if {
	pattern != ""
	_pattern_matches(pattern, _tag)
}

_included(patterns) if count(patterns) == 0

_included(patterns) if {
	some pattern in patterns
	_pattern_matches(pattern, _tag)
}

_excluded(patterns) if {
	some pattern in patterns
	_pattern_matches(pattern, _tag)
}

# The converter precomputes source_regex; a hand-written rule without it still matches by glob
# (without captures).
_captures(rule) := groups if {
	object.get(rule, "source_regex", "") != ""
	found := regex.find_all_string_submatch_n(rule.source_regex, _repository, 1)
	count(found) == 1
	groups := found[0]
}

_captures(rule) := [_repository] if {
	object.get(rule, "source_regex", "") == ""
	_pattern_matches(object.get(rule, "source_repository", ""), _repository)
}

# Freightliner keeps the source name when the destination is empty or repeats the source pattern.
_destination_repository(rule, _) := _repository if {
	object.get(rule, "destination_repository", "") in {"", object.get(rule, "source_repository", "")}
}

_destination_repository(rule, groups) := strings.replace_n(
	{sprintf("$%d", [i]): group | some i, group in groups; i > 0; i < 10},
	rule.destination_repository,
) if {
	not object.get(rule, "destination_repository", "") in {"", object.get(rule, "source_repository", "")}
}

_destinations := _inventory - {_source}

_first_segment := split(_repository, "/")[0]

# The converter indexes rules by the literal first path segment of their source pattern
# (data.replication.legacy.by_prefix), so a decision looks at the handful of rules that could
# match instead of walking all of them; rules whose first segment is a glob are in "unindexed".
# Hand-written data without the index falls back to every rule.
default _unindexed := []

_unindexed := data.replication.legacy.unindexed

_candidate_indexes := array.concat(object.get(data.replication.legacy.by_prefix, _first_segment, []), _unindexed)

_candidate_indexes := numbers.range(0, count(_rules) - 1) if {
	not data.replication.legacy.by_prefix
	count(_rules) > 0
}

_candidates := [[index, rule] |
	some index in _candidate_indexes
	rule := data.replication.legacy.rules[index] # one rule read from the store, never all of them
	object.get(rule, "source_registry", "") in {"", _source}
	rule.destination_registry in _destinations
]

# Complete rules (not partial ones): a partial rule looked up by a bound key re-runs its body on
# every lookup, and environment.deny looks routes up once per registry.
# regal ignore:prefer-set-or-object-rule
_targets := {id: target |
	some [index, rule] in _candidates
	_tags_match(rule)
	groups := _captures(rule)
	id := object.get(rule, "id", sprintf("legacy-%d", [index]))
	target := {
		"registry": rule.destination_registry,
		"repository": _destination_repository(rule, groups),
		"tag": concat("", [
			object.get(rule, "destination_tag_prefix", ""),
			_tag,
			object.get(rule, "destination_tag_suffix", ""),
		]),
		"rule": id,
	}
}

# Several legacy rules may name one destination: the smallest id wins, as for explicit rules.
# METADATA
# description: Destination registry name → {registry, repository, tag, rule} of the winning rule.
routes := {registry: _targets[winner] | # regal ignore:prefer-set-or-object-rule
	some registry in {target.registry | some target in _targets}
	winner := min({id | some id, target in _targets; target.registry == registry})
}
