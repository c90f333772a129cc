package main_test

import rego.v1

import data.main

_container(overrides) := object.union(
	{
		"name": "policy-sidecar",
		"image": "registry.example.com/policy-sidecar:0.1.0",
		"securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
		"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
		"livenessProbe": {"grpc": {"port": 50051}},
		"readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}},
	},
	overrides,
)

_deployment(container, spec) := {
	"kind": "Deployment",
	"metadata": {"name": "sidecar"},
	"spec": object.union(
		{
			"replicas": 1,
			"template": {"spec": {
				"securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
				"containers": [container],
			}},
		},
		spec,
	),
}

_deny(manifest) := messages if {
	messages := main.deny with input as manifest
}

test_a_hardened_deployment_passes if {
	count(_deny(_deployment(_container({}), {}))) == 0
}

test_root_is_refused if {
	manifest := _deployment(
		_container({"securityContext": {
			"readOnlyRootFilesystem": true,
			"allowPrivilegeEscalation": false,
			"runAsNonRoot": false,
		}}),
		{},
	)
	_deny(manifest) == {`Deployment/sidecar: container "policy-sidecar" may run as root (runAsNonRoot is not true)`}
}

test_user_zero_is_refused if {
	manifest := _deployment(
		_container({"securityContext": {
			"readOnlyRootFilesystem": true,
			"allowPrivilegeEscalation": false,
			"runAsUser": 0,
		}}),
		{},
	)
	_deny(manifest) == {`Deployment/sidecar: container "policy-sidecar" runs as user 0`}
}

test_writable_root_and_escalation_are_refused if {
	container := object.union(object.remove(_container({}), ["securityContext"]), {"securityContext": {}})
	manifest := _deployment(container, {})
	_deny(manifest) == {
		`Deployment/sidecar: container "policy-sidecar" has a writable root filesystem`,
		`Deployment/sidecar: container "policy-sidecar" allows privilege escalation`,
	}
}

test_missing_limits_are_refused if {
	container := object.remove(_container({}), ["resources"])
	manifest := _deployment(object.union(container, {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}), {})
	_deny(manifest) == {
		`Deployment/sidecar: container "policy-sidecar" sets no cpu limits`,
		`Deployment/sidecar: container "policy-sidecar" sets no memory limits`,
	}
}

test_missing_probes_are_refused if {
	container := object.remove(_container({}), ["livenessProbe", "readinessProbe"])
	_deny(_deployment(container, {})) == {
		`Deployment/sidecar: container "policy-sidecar" has no livenessProbe`,
		`Deployment/sidecar: container "policy-sidecar" has no readinessProbe`,
	}
}

test_latest_and_untagged_images_are_refused if {
	some image in ["policy-sidecar:latest", "registry:5000/policy-sidecar"]
	_deny(_deployment(_container({"image": image}), {})) == {sprintf(
		`Deployment/sidecar: container "policy-sidecar" image %q has no pinned tag or digest`,
		[image],
	)}
}

test_digest_and_registry_port_images_pass if {
	some image in ["registry:5000/policy-sidecar:0.1.0", "policy-sidecar@sha256:0123"]
	count(_deny(_deployment(_container({"image": image}), {}))) == 0
}

test_a_claim_needs_one_replica_and_recreate if {
	claim := {"volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": "state"}}]}
	manifest := _deployment(_container({}), {"replicas": 2, "template": {"spec": claim}})
	_deny(manifest) == {
		"Deployment/sidecar: mounts a PersistentVolumeClaim but runs 2 replicas (one SQLite writer)",
		"Deployment/sidecar: mounts a PersistentVolumeClaim but does not use the Recreate strategy",
	}
	recreate := _deployment(_container({}), {"strategy": {"type": "Recreate"}, "template": {"spec": claim}})
	count(_deny(recreate)) == 0
}

test_external_services_are_refused if {
	refused := "Service/grpc: type LoadBalancer exposes the sidecar outside the cluster"
	_deny({"kind": "Service", "metadata": {"name": "grpc"}, "spec": {"type": "LoadBalancer"}}) == {refused}
	count(_deny({"kind": "Service", "metadata": {"name": "grpc"}, "spec": {"type": "ClusterIP"}})) == 0
}
