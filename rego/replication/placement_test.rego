package replication.placement_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.placement

_reg(name, region, cost) := {"name": name, "region": region, "egress_cost_per_gb": cost}

_regs := [
	_reg("b-us", "us", 0.05),
	_reg("a-us", "us", 0.05),
	_reg("eu", "eu", 0.09),
	_reg("ap", "ap", 0.01),
]

_with(access, size) := object.union(fx.image({"size_bytes": size}), {"access": access})

test_ranked_by_pulls_then_cost_then_name if {
	placement.ranked(_regs) == ["ap", "eu", "a-us", "b-us"] with input as _with({"eu": 100, "ap": 100}, 1)
}

test_more_pulls_rank_first if {
	placement.ranked(_regs) == ["a-us", "b-us", "eu", "ap"] with input as _with({"us": 5, "eu": 4}, 1)
}

test_missing_access_counts_zero if {
	placement.ranked(_regs) == ["ap", "a-us", "b-us", "eu"] with input as fx.image({"size_bytes": 1})
	placement.ranked(_regs) == ["ap", "a-us", "b-us", "eu"] with input as {"access": null}
}

test_missing_cost_counts_zero if {
	placement.ranked([_reg("x", "us", 0.5), {"name": "y", "region": "us"}]) == ["y", "x"] with input as {}
}

test_estimated_cost if {
	placement.estimated_cost(_regs) == 0.4 with input as _with({}, 2000000000)
	placement.estimated_cost(_regs) == 0 with input as {}
}

test_plan_under_threshold_keeps_every_route if {
	plan := placement.plan(_regs, set()) with input as _with({"eu": 1}, 1000000000)
	plan == {"routes": ["eu", "ap", "a-us", "b-us"], "dropped": set()}
}

test_cost_equal_to_threshold_is_not_consolidated if {
	plan := placement.plan(_regs, set()) with input as _with({}, 1000000000)
		with data.replication.settings.cost.threshold as 0.2
	count(plan.dropped) == 0
}

test_over_threshold_keeps_rank_one_only if {
	plan := placement.plan(_regs, set()) with input as _with({"eu": 1}, 1000000000000)
	plan == {"routes": ["eu"], "dropped": {"ap", "a-us", "b-us"}}
}

test_over_threshold_keeps_compliance_required if {
	plan := placement.plan(_regs, {"b-us", "not-routable"}) with input as _with({"eu": 1}, 1000000000000)
	plan == {"routes": ["eu", "b-us"], "dropped": {"ap", "a-us"}}
}

test_threshold_from_settings if {
	plan := placement.plan(_regs, set()) with input as _with({}, 1000000000)
		with data.replication.settings.cost.threshold as 0.1
	plan.routes == ["ap"]
}

test_empty_plan if {
	placement.plan([], set()) == {"routes": [], "dropped": set()} with input as {}
}

test_consolidation_code_is_declared_with_a_message if {
	placement.reasons.COST_CONSOLIDATED != ""
}
