package replication.priority_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.priority

_img(tag, criticality) := fx.image({"tag": tag, "labels": {"criticality": criticality}})

test_documented_defaults if {
	priority.value == 90 with input as _img("prod-1", "critical")
	priority.value == 75 with input as _img("prod-1", "high")
	priority.value == 60 with input as _img("prod-1", "normal")
	priority.value == 45 with input as _img("dev-1", "normal")
	priority.value == 30 with input as _img("latest", "normal")
	priority.value == 15 with input as _img("latest", "low")
}

test_prod_above_dev_above_sandbox if {
	prod := priority.value with input as _img("prod-1", "high")
	dev := priority.value with input as _img("dev-1", "high")
	prod > dev
	sandbox := priority.value with input as _img("x", "high")
	dev > sandbox
}

test_missing_label_uses_default_criticality if {
	priority.value == 60 with input as fx.base
	priority.value == 30 with input as {}
}

test_unknown_label_uses_default_criticality if {
	priority.value == 60 with input as _img("prod-1", "urgent")
}

test_settings_override_weights if {
	settings := {"criticality": {"gold": 100}, "default_criticality": "gold", "environment": {"prod": 5}}
	priority.value == 100 with input as _img("prod-1", "gold") with data.replication.settings.priority as settings
	priority.value == 100 with input as _img("dev-1", "tin") with data.replication.settings.priority as settings
}

test_unknown_default_criticality_weighs_zero if {
	settings := {"criticality": {}, "default_criticality": "none", "environment": {"prod": 5}}
	priority.value == 5 with input as fx.base with data.replication.settings.priority as settings
}

test_clamped_to_range if {
	high := {"criticality": {"normal": 95}, "environment": {"prod": 30}}
	priority.value == 100 with input as fx.base with data.replication.settings.priority as high
	low := {"criticality": {"normal": -50}, "environment": {"prod": 10}}
	priority.value == 0 with input as fx.base with data.replication.settings.priority as low
}

test_rule_priority_replaces_computed if {
	rules := [{"id": "boost", "match": {"repository": "team/*"}, "set": {"priority": 99}}]
	priority.value == 99 with input as fx.base with data.replication.rules as rules
	priority.from_rule with input as fx.base with data.replication.rules as rules
	not priority.from_rule with input as fx.base
}

test_rule_priority_is_clamped if {
	rules := [{"id": "boost", "set": {"priority": 250}}]
	priority.value == 100 with input as fx.base with data.replication.rules as rules
}
