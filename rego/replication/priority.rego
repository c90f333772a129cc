# METADATA
# title: Priority
# description: >-
#   The decision's priority: criticality weight (label criticality, unknown or missing means the
#   default criticality) plus environment weight, clamped to 0..100. An active explicit rule that
#   sets a priority replaces it (highest rule priority wins, equal priorities the smallest id).
# scope: package
# custom:
#   id: replication.priority
package replication.priority

import rego.v1

import data.replication.environment
import data.replication.lib
import data.replication.ruleset

_defaults := {
	"criticality": {"critical": 60, "high": 45, "normal": 30, "low": 15},
	"default_criticality": "normal",
	"environment": {"prod": 30, "dev": 15, "sandbox": 0},
}

default _settings := {}

_settings := data.replication.settings.priority

_criticality := object.get(_settings, "criticality", _defaults.criticality)

_default_criticality := object.get(_settings, "default_criticality", _defaults.default_criticality)

_environment := object.get(_settings, "environment", _defaults.environment)

_label := lib.labels.criticality

default _criticality_weight := 0

# An unknown or missing criticality label weighs like the default criticality.
_criticality_weight := weight if {
	weight := _criticality[_label]
	is_number(weight)
} else := weight if {
	weight := _criticality[_default_criticality]
	is_number(weight)
}

default _environment_weight := 0

_environment_weight := weight if {
	weight := _environment[environment.image_environment]
	is_number(weight)
}

_clamp(value) := max([0, min([100, round(value)])])

# METADATA
# description: True when an active explicit rule decided the priority.
from_rule if is_number(ruleset.priority)

# METADATA
# description: The priority of the decision, 0..100, higher replicates and recovers first.
value := _clamp(ruleset.priority) if {
	from_rule
} else := _clamp(_criticality_weight + _environment_weight)
