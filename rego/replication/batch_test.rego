package replication.batch_test

import rego.v1

import data.replication.batch
import data.replication.fixtures_test as fx

_items := [
	fx.base,
	fx.image({"labels": {"compliance-required": "true"}, "present_at": ["prod-us"]}),
	fx.image({"tag": "dev-1"}),
	fx.with_input({"caller": {"tenant": "acme"}}),
	{},
]

_one(item) := decision if {
	decision := data.replication.decision with input as item
}

test_each_item_gets_its_own_decision_in_order if {
	decisions := batch.decisions with input as {"items": _items}
	count(decisions) == count(_items)
	every index, item in _items {
		decisions[index] == _one(item)
	}
}

test_items_do_not_leak_into_each_other if {
	decisions := batch.decisions with input as {"items": _items}
	decisions[1].remove == [{"registry": "prod-us", "reasons": ["NOT_GDPR"]}]
	decisions[0].remove == []
	[route.registry | some route in decisions[2].routes] == ["dev-eu", "dev-us"]
	not decisions[3].allow
	decisions[4].routes == []
}

test_no_items_no_decisions if {
	batch.decisions == [] with input as {}
	batch.decisions == [] with input as {"items": "many"}
	batch.decisions == [] with input as {"items": []}
}

test_bundle_data_applies_to_every_item if {
	rules := [{"id": "embargo", "deny": [{"registry": "prod-us", "code": "EMBARGO"}]}]
	decisions := batch.decisions with input as {"items": [fx.base, fx.base]} with data.replication.rules as rules
	every decision in decisions {
		{"registry": "prod-us", "reasons": ["EMBARGO"]} in decision.denied
	}
}

test_the_package_document_is_only_the_decisions if {
	document := data.replication.batch with input as {"items": [fx.base]}
	document == {"decisions": [_one(fx.base)]}
}
