# Kubernetes workloads: resources, probes, non-root, read-only root, no escalation, pinned
# images, and in prod replicas, disruption budgets; a default-deny network policy everywhere.
package shopmesh

import rego.v1

deployment := "kubernetes:apps/v1:Deployment"

pod_spec := input.spec.template.spec if input.__type == deployment

# METADATA
# title: Containers declare CPU and memory requests and limits
# description: The scheduler places pods by requests; limits keep one pod from starving its node.
# custom:
#   id: SHOP-K8S-001
#   severity: medium
#   remediation: Set resources.requests and resources.limits for cpu and memory on every container.
deny_k8s_resources contains msg if {
	some c in containers
	some kind in ["requests", "limits"]
	some res in ["cpu", "memory"]
	object.get(object.get(object.get(c, "resources", {}), kind, {}), res, "") == ""
	msg := sprintf("%s: container %s has no %s.%s", [input.__name, c.name, kind, res])
}

# METADATA
# title: Containers have liveness and readiness probes
# description: Kubernetes restarts a stuck container and sends traffic only to ready ones.
# custom:
#   id: SHOP-K8S-002
#   severity: medium
#   remediation: Add livenessProbe and readinessProbe (the services serve /healthz and /readyz).
deny_k8s_probes contains msg if {
	some c in containers
	some probe in ["livenessProbe", "readinessProbe"]
	not c[probe]
	msg := sprintf("%s: container %s has no %s", [input.__name, c.name, probe])
}

# METADATA
# title: Containers run as a non-root user
# description: A compromised process gets no root inside the container.
# custom:
#   id: SHOP-K8S-003
#   severity: high
#   remediation: Set runAsNonRoot true (pod or container securityContext) and a non-zero runAsUser.
deny_k8s_non_root contains msg if {
	some c in containers
	not container_non_root(c)
	msg := sprintf("%s: container %s may run as root", [input.__name, c.name])
}

deny_k8s_non_root contains msg if {
	input.__type == deployment
	object.get(object.get(pod_spec, "securityContext", {}), "runAsUser", 1) == 0
	msg := sprintf("%s: the pod runs as user 0", [input.__name])
}

deny_k8s_non_root contains msg if {
	some c in containers
	object.get(object.get(c, "securityContext", {}), "runAsUser", 1) == 0
	msg := sprintf("%s: container %s runs as user 0", [input.__name, c.name])
}

container_non_root(c) if c.securityContext.runAsNonRoot == true

container_non_root(c) if {
	pod_spec.securityContext.runAsNonRoot == true
	not c.securityContext.runAsNonRoot == false
}

# METADATA
# title: Root filesystems are read-only
# description: A compromised process cannot change the container's binaries; writable paths are explicit volumes.
# custom:
#   id: SHOP-K8S-004
#   severity: medium
#   remediation: Set securityContext.readOnlyRootFilesystem to true and mount an emptyDir where files are written.
deny_k8s_read_only_root contains msg if {
	some c in containers
	not c.securityContext.readOnlyRootFilesystem == true
	msg := sprintf("%s: container %s has a writable root filesystem", [input.__name, c.name])
}

# METADATA
# title: No privilege escalation
# description: Containers are not privileged and cannot gain privileges (setuid, capabilities).
# custom:
#   id: SHOP-K8S-005
#   severity: high
#   remediation: Set allowPrivilegeEscalation false and privileged false (and drop ALL capabilities).
deny_k8s_privilege_escalation contains msg if {
	some c in containers
	not c.securityContext.allowPrivilegeEscalation == false
	msg := sprintf("%s: container %s may escalate privileges", [input.__name, c.name])
}

deny_k8s_privilege_escalation contains msg if {
	some c in containers
	c.securityContext.privileged == true
	msg := sprintf("%s: container %s is privileged", [input.__name, c.name])
}

# METADATA
# title: Images are pinned
# description: An image without a tag or with latest changes under a running deployment.
# custom:
#   id: SHOP-K8S-006
#   severity: medium
#   remediation: Use an immutable tag (the commit SHA) or a digest.
deny_k8s_image_tag contains msg if {
	some c in containers
	not image_pinned(c.image)
	msg := sprintf("%s: container %s uses an unpinned image %s", [input.__name, c.name, c.image])
}

image_pinned(image) if contains(image, "@sha256:")

image_pinned(image) if {
	not contains(image, "@")
	parts := split(image, "/")
	last := parts[count(parts) - 1]
	contains(last, ":")
	tag := split(last, ":")[1]
	tag != "latest"
	tag != ""
}

# METADATA
# title: Production deployments run at least two replicas
# description: One pod is a single point of failure during node drains and rollouts.
# custom:
#   id: SHOP-K8S-007
#   severity: high
#   remediation: Set spec.replicas to 2 or more in prod, or leave it unset and scale the Deployment with a HorizontalPodAutoscaler whose minReplicas is 2 or more.
stack_deny_k8s_replicas_prod contains msg if {
	some d in input.resources
	d.__type == deployment
	prod_resource(d)
	not two_or_more(d)
	msg := sprintf("%s: %v replica(s) in prod and no HorizontalPodAutoscaler keeping 2 or more, want at least 2", [d.__name, object.get(d.spec, "replicas", 1)])
}

two_or_more(d) if d.spec.replicas >= 2

# Without spec.replicas the Deployment is the HPA's to scale (setting both makes every update
# fight the HPA); the HPA's floor is then what counts.
two_or_more(d) if {
	not "replicas" in object.keys(d.spec)
	some h in input.resources
	h.__type == "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
	h.spec.scaleTargetRef.kind == "Deployment"
	h.spec.scaleTargetRef.name == d.metadata.name
	object.get(h.metadata, "namespace", "default") == object.get(d.metadata, "namespace", "default")
	object.get(h.spec, "minReplicas", 1) >= 2
}

# METADATA
# title: Autoscaled deployments leave replicas to the autoscaler
# description: A Deployment that sets spec.replicas while an HPA scales it is reset to that count on every deploy, undoing the HPA.
# custom:
#   id: SHOP-K8S-010
#   severity: medium
#   remediation: Remove spec.replicas from Deployments that a HorizontalPodAutoscaler targets.
stack_deny_k8s_replicas_with_hpa contains msg if {
	some d in input.resources
	d.__type == deployment
	"replicas" in object.keys(d.spec)
	some h in input.resources
	h.__type == "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
	h.spec.scaleTargetRef.name == d.metadata.name
	object.get(h.metadata, "namespace", "default") == object.get(d.metadata, "namespace", "default")
	msg := sprintf("%s: sets replicas (%v) and is scaled by HorizontalPodAutoscaler %s", [d.__name, d.spec.replicas, h.__name])
}

# METADATA
# title: No Secret holds a database password
# description: A password copied into a Secret is in Pulumi state and etcd, and goes stale when the database rotates it.
# custom:
#   id: SHOP-K8S-011
#   severity: high
#   remediation: Give the workload an IRSA role that reads the database secret (or uses IAM database authentication) at connection time; keep only the server's address in configuration.
deny_k8s_secret_database_password contains msg if {
	input.__type == "kubernetes:core/v1:Secret"
	some key, value in secret_values
	regex.match(`(?i)^postgres(ql)?://[^/@:]+:[^/@]+@`, value)
	msg := sprintf("%s: %s is a database URL with a password", [input.__name, key])
}

deny_k8s_secret_database_password contains msg if {
	input.__type == "kubernetes:core/v1:Secret"
	some key, _ in secret_values
	regex.match(`(?i)(^|_)(DB|DATABASE|PG|POSTGRES)_?PASS(WORD)?$`, key)
	msg := sprintf("%s: %s is a database password", [input.__name, key])
}

# A Secret's values: stringData as given, data base64-decoded.
secret_values[key] := value if some key, value in object.get(input, "stringData", {})

secret_values[key] := base64.decode(value) if some key, value in object.get(input, "data", {})

# METADATA
# title: Production deployments have a PodDisruptionBudget
# description: Node drains and upgrades keep enough pods of every service running.
# custom:
#   id: SHOP-K8S-008
#   severity: medium
#   remediation: Add a policy/v1 PodDisruptionBudget selecting the deployment's pods.
stack_deny_k8s_pdb_prod contains msg if {
	some d in input.resources
	d.__type == deployment
	prod_resource(d)
	not has_pdb(d)
	msg := sprintf("%s: no PodDisruptionBudget selects its pods", [d.__name])
}

has_pdb(d) if {
	some p in input.resources
	p.__type == "kubernetes:policy/v1:PodDisruptionBudget"
	object.get(p.metadata, "namespace", "default") == object.get(d.metadata, "namespace", "default")
	labels := d.spec.template.metadata.labels
	every k, v in p.spec.selector.matchLabels {
		labels[k] == v
	}
}

# METADATA
# title: Every namespace with workloads has a default-deny network policy
# description: Pods accept and open only the connections a policy allows.
# custom:
#   id: SHOP-K8S-009
#   severity: high
#   remediation: "Add a NetworkPolicy with podSelector {} and policyTypes [Ingress, Egress] and no rules."
stack_deny_k8s_default_deny contains msg if {
	some ns in workload_namespaces
	not default_deny(ns)
	msg := sprintf("namespace %s: no default-deny NetworkPolicy", [ns])
}

workload_namespaces contains object.get(d.metadata, "namespace", "default") if {
	some d in input.resources
	d.__type == deployment
}

default_deny(ns) if {
	some p in input.resources
	p.__type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
	object.get(p.metadata, "namespace", "default") == ns
	count(object.get(p.spec, "podSelector", {})) == 0
	{"Ingress", "Egress"} == {t | some t in p.spec.policyTypes}
	count(object.get(p.spec, "ingress", [])) == 0
	count(object.get(p.spec, "egress", [])) == 0
}
