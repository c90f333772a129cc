# METADATA
# title: Kubernetes workload checks for the rendered policy-sidecar chart
# description: >-
#   conftest policy run on every manifest `helm template` renders (one document at a time): each
#   container of a workload runs as non-root on a read-only root filesystem without privilege
#   escalation, has CPU and memory requests and limits, a liveness and a readiness probe, and a
#   pinned image tag; a pod that mounts a PersistentVolumeClaim runs as one replica replaced with
#   the Recreate strategy (SQLite allows one writer); Services are not exposed outside the cluster.
# scope: package
# custom:
#   id: chart-workload
package main

import rego.v1

_workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

_pod := input.spec.template.spec if input.kind in _workload_kinds

_name := sprintf("%s/%s", [input.kind, input.metadata.name])

_containers contains container if {
	some key in ["initContainers", "containers"]
	some container in object.get(_pod, key, [])
}

# A setting of the container's securityContext, else the pod's (the container's wins).
_security(container, key) := container.securityContext[key]

_security(container, key) := _pod.securityContext[key] if {
	not key in object.keys(object.get(container, "securityContext", {}))
}

# A tag other than latest, or a digest.
_pinned(image) if contains(image, "@sha256:")

_pinned(image) if {
	parts := split(image, "/")
	tag := split(parts[count(parts) - 1], ":")
	count(tag) == 2
	not tag[1] in {"", "latest"}
}

_claims contains volume.persistentVolumeClaim.claimName if {
	some volume in _pod.volumes
	volume.persistentVolumeClaim
}

# METADATA
# title: deny
# description: every reason the manifest is refused
# entrypoint: true
deny contains msg if {
	some container in _containers
	not _security(container, "runAsNonRoot") == true
	msg := sprintf("%s: container %q may run as root (runAsNonRoot is not true)", [_name, container.name])
}

deny contains msg if {
	some container in _containers
	_security(container, "runAsUser") == 0
	msg := sprintf("%s: container %q runs as user 0", [_name, container.name])
}

deny contains msg if {
	some container in _containers
	not container.securityContext.readOnlyRootFilesystem == true
	msg := sprintf("%s: container %q has a writable root filesystem", [_name, container.name])
}

deny contains msg if {
	some container in _containers
	not container.securityContext.allowPrivilegeEscalation == false
	msg := sprintf("%s: container %q allows privilege escalation", [_name, container.name])
}

deny contains msg if {
	some container in _containers
	some bound in ["requests", "limits"]
	some resource in ["cpu", "memory"]
	not container.resources[bound][resource]
	msg := sprintf("%s: container %q sets no %s %s", [_name, container.name, resource, bound])
}

deny contains msg if {
	some container in _pod.containers
	some probe in ["livenessProbe", "readinessProbe"]
	not container[probe]
	msg := sprintf("%s: container %q has no %s", [_name, container.name, probe])
}

deny contains msg if {
	some container in _containers
	not _pinned(container.image)
	msg := sprintf(
		"%s: container %q image %q has no pinned tag or digest",
		[_name, container.name, container.image],
	)
}

deny contains msg if {
	count(_claims) > 0
	input.kind == "Deployment"
	object.get(input.spec, "replicas", 1) != 1
	msg := sprintf(
		"%s: mounts a PersistentVolumeClaim but runs %v replicas (one SQLite writer)",
		[_name, input.spec.replicas],
	)
}

deny contains msg if {
	count(_claims) > 0
	input.kind == "Deployment"
	not input.spec.strategy.type == "Recreate"
	msg := sprintf("%s: mounts a PersistentVolumeClaim but does not use the Recreate strategy", [_name])
}

deny contains msg if {
	input.kind == "Service"
	input.spec.type in {"NodePort", "LoadBalancer"}
	msg := sprintf("%s: type %s exposes the sidecar outside the cluster", [_name, input.spec.type])
}
