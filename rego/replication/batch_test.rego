package replication_batch_test

import rego.v1

import data.replication
import data.replication.batch
import data.replication.fixtures_test as fx

test_each_item_decided_as_alone if {
	first := object.union(fx.base, {"image": object.union(fx.base.image, {"tag": "prod-1.0"})})
	second := object.union(fx.base, {"image": object.union(fx.base.image, {"tag": "dev-1.0"})})
	decisions := batch.decisions with input as {"items": [first, second]}
	count(decisions) == 2
	decisions[0] == replication.decision with input as first
	decisions[1] == replication.decision with input as second
	decisions[0] != decisions[1]
}

test_no_items_no_decisions if {
	batch.decisions == [] with input as {"items": []}
}
