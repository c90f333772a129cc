"""The records the sidecar passes around, frozen dataclasses with no behaviour beyond (de)serialising.

* :mod:`sidecar.model.decision` — the policy contract (DESIGN §3): requests, the policy input the
  sidecar builds and the decision OPA returns.
* :mod:`sidecar.model.jobs` — replication jobs, copy plans, progress and deferred work.
"""
