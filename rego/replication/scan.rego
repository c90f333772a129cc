# METADATA
# title: Security scan gate
# description: >-
#   Gated environments (prod by default) refuse unscanned images (SCAN_MISSING) and failed scans
#   or any critical finding (SCAN_FAILED). A scan older than the maximum age blocks the whole
#   decision (SCAN_EXPIRED) until a fresh scan arrives.
# scope: package
# custom:
#   id: replication.scan
package replication.scan

import rego.v1

import data.replication.lib

# METADATA
# description: The reason codes this package emits, each with its message.
reasons := {
	"SCAN_EXPIRED": "security scan is older than the maximum scan age",
	"SCAN_FAILED": "security scan failed or found critical vulnerabilities",
	"SCAN_MISSING": "image has no security scan",
}

default _settings := {}

_settings := data.replication.settings.scan

_gated := {environment | some environment in object.get(_settings, "gated_environments", ["prod"])}

_max_age_days := object.get(_settings, "max_age_days", 7)

_nanos_per_day := ((24 * 60) * 60) * 1000000000

_scan := scan if {
	scan := input.image.scan
	is_object(scan)
}

# METADATA
# description: True when the image has no scan facts at all (scan null or absent).
missing if not _scan

# METADATA
# scope: document
# description: True when the scan failed or found at least one critical vulnerability.
failed if _scan.status == "failed"

failed if _scan.critical > 0

# Uses input.now, never the wall clock, so a replayed input yields the same decision.
# METADATA
# description: True when the scan completed longer ago than the maximum scan age.
expired if {
	completed := time.parse_rfc3339_ns(_scan.completed_at)
	now := time.parse_rfc3339_ns(input.now)
	now - completed > _max_age_days * _nanos_per_day
}

# METADATA
# description: >-
#   The instants (ns since the epoch) at which this input's decision may change with input.now
#   alone: the scan's expiry. expired holds exactly for now > boundary. A decision cache keeps an
#   answer only while no boundary lies between two instants (replication.cacheable); every rule
#   that reads input.now must add its boundary here (tests/unit/test_decision_cache_policy.py).
time_boundaries contains floor(completed + (_max_age_days * _nanos_per_day)) if {
	completed := time.parse_rfc3339_ns(_scan.completed_at)
}

_code := "SCAN_MISSING" if missing

_code := "SCAN_FAILED" if failed

# METADATA
# description: One SCAN_MISSING or SCAN_FAILED denial per registry of a gated environment.
deny contains {"registry": name, "code": _code} if {
	_code # first: a passed scan (the common case) looks at no registry
	some environment in _gated
	some name in lib.destinations_by_environment[environment]
}

# METADATA
# description: Codes that make allow false for the whole decision.
blocking contains "SCAN_EXPIRED" if expired
