# METADATA
# title: Customer allowlists
# description: >-
#   A registry named in the sensitive customer allowlist (data.sensitive.customers.allowlist,
#   registry name to customer ids) receives only images whose customer-id label names one of its
#   customers; every other image is denied CUSTOMER_NOT_ALLOWED there. The allowlist is sensitive
#   data: the sidecar decrypts it and loads it through OPA's Data API, it never ships in a
#   bundle, and no output quotes it (only the code). Without it no registry is restricted.
# scope: package
# custom:
#   id: replication.customers
package replication.customers

import rego.v1

import data.replication.lib

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {"CUSTOMER_NOT_ALLOWED": "registry accepts only images of its allowlisted customers"}

_label := "customer-id"

default _allowlist := {}

_allowlist := list if {
	list := data.sensitive.customers.allowlist
	is_object(list)
}

# Only a list of customer ids restricts a registry; anything else is ignored (as the fail mode does).
_restricted[name] := ids if {
	some name, ids in _allowlist
	is_array(ids)
}

default _customer := null

_customer := id if {
	id := lib.labels[_label]
	is_string(id)
	id != ""
}

_allowed(registry_name) if {
	some id in _restricted[registry_name]
	id == _customer
}

# METADATA
# description: One CUSTOMER_NOT_ALLOWED denial per allowlisted registry the image's customer is not on.
deny contains {"registry": name, "code": "CUSTOMER_NOT_ALLOWED"} if {
	some name, _ in _restricted # usually none: then no registry is looked at
	name in lib.destination_names
	not _allowed(name)
}
