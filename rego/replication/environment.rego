# METADATA
# title: Environment routing
# description: >-
#   Maps the image tag to an environment (first matching glob in settings, else the default
#   sandbox environment) and denies every registry of another environment with ENV_MISMATCH,
#   unless a legacy rule names that registry as its destination (explicit intent).
# scope: package
# custom:
#   id: replication.environment
package replication.environment

import rego.v1

import data.replication.legacy
import data.replication.lib

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {"ENV_MISMATCH": "registry environment differs from the image's environment"}

# Safe defaults: a bundle without settings still routes like the documented defaults.
_default_patterns := [
	{"pattern": "prod-*", "environment": "prod"},
	{"pattern": "dev-*", "environment": "dev"},
]

default _settings := {}

_settings := data.replication.settings.environments

_patterns := object.get(_settings, "patterns", _default_patterns)

_default_environment := object.get(_settings, "default", "sandbox")

default _tag := ""

_tag := input.image.tag if is_string(input.image.tag)

# Tags never contain "/", but glob.match with no delimiters would stop "*" at "." (its default).
_matching := [p.environment |
	some p in _patterns
	glob.match(p.pattern, ["/"], _tag)
]

# METADATA
# description: The image's environment, from the first tag pattern that matches.
image_environment := _matching[0] if {
	count(_matching) > 0
} else := _default_environment

# METADATA
# description: One ENV_MISMATCH denial per registry outside the image's environment.
deny contains {"registry": name, "code": "ENV_MISMATCH"} if {
	some environment, names in lib.destinations_by_environment
	environment != image_environment
	some name in names
	not legacy.routes[name]
}
