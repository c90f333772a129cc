package replication.lib_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.lib

_names(registries) := [registry.name | some registry in registries]

test_source_is_the_image_registry if {
	lib.source == "ci" with input as fx.base
}

test_source_defaults_to_empty if {
	lib.source == "" with input as {}
	lib.source == "" with input as {"image": {"repository": "team/app"}}
}

test_destinations_are_every_registry_but_the_source_in_inventory_order if {
	names := _names(lib.destinations) with input as fx.base
	names == [r.name | some r in fx.registries; r.name != "ci"]
}

test_without_source_every_registry_is_a_destination if {
	names := _names(lib.destinations) with input as {"image": {"repository": "team/app"}, "registries": fx.registries}
	names == _names(fx.registries)
}

test_nameless_registry_is_no_destination if {
	lib.destinations == [{"name": "x"}] with input as {"registries": [{"name": "x"}, {"region": "r"}]}
}

test_no_registries_no_destinations if {
	lib.destinations == [] with input as {}
}

test_environment_of if {
	lib.environment_of({"name": "x", "environment": "prod"}) == "prod"
	lib.environment_of({"name": "x"}) == ""
}

test_labels if {
	lib.labels == {"team": "web"} with input as fx.image({"labels": {"team": "web"}})
	lib.labels == {} with input as {"image": {}}
	lib.labels == {} with input as {}
}

test_tenant_of_accepts_only_non_empty_strings if {
	lib.tenant_of("acme") == "acme"
	not lib.tenant_of("")
	not lib.tenant_of(null)
	not lib.tenant_of(7)
}

test_image_tenant if {
	lib.image_tenant == "acme" with input as fx.image({"tenant": "acme"})
	lib.image_tenant == null with input as fx.base
	lib.image_tenant == null with input as fx.image({"tenant": ""})
	lib.image_tenant == null with input as {}
}
