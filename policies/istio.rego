# Istio: STRICT mutual TLS for every namespace with workloads, an AuthorizationPolicy per service.
package shopmesh

import rego.v1

peer_authentication := "kubernetes:security.istio.io/v1:PeerAuthentication"

authorization_policy := "kubernetes:security.istio.io/v1:AuthorizationPolicy"

# METADATA
# title: STRICT mTLS in every namespace with workloads
# description: A namespace-wide (or mesh-wide) PeerAuthentication in STRICT mode refuses plain-text traffic between pods.
# custom:
#   id: SHOP-ISTIO-001
#   severity: critical
#   remediation: Add a PeerAuthentication named default, without a selector, with mtls.mode STRICT, in the namespace (or in istio-system for the mesh).
stack_deny_istio_strict_mtls contains msg if {
	some ns in workload_namespaces
	not strict_mtls(ns)
	msg := sprintf("namespace %s: no STRICT PeerAuthentication", [ns])
}

strict_mtls(ns) if {
	some p in input.resources
	p.__type == peer_authentication
	object.get(p.metadata, "namespace", "default") in {ns, "istio-system"}
	not p.spec.selector
	p.spec.mtls.mode == "STRICT"
}

# METADATA
# title: An AuthorizationPolicy for every service
# description: Each workload admits only the callers it names; without a policy Istio admits everyone in the mesh.
# custom:
#   id: SHOP-ISTIO-002
#   severity: high
#   remediation: Add an ALLOW AuthorizationPolicy selecting the deployment's app label and listing its callers.
stack_deny_istio_authorization_policy contains msg if {
	some d in input.resources
	d.__type == deployment
	not authorized(d)
	msg := sprintf("%s: no AuthorizationPolicy selects its pods", [d.__name])
}

authorized(d) if {
	some p in input.resources
	p.__type == authorization_policy
	object.get(p.metadata, "namespace", "default") == object.get(d.metadata, "namespace", "default")
	labels := d.spec.template.metadata.labels
	count(p.spec.selector.matchLabels) > 0
	every k, v in p.spec.selector.matchLabels {
		labels[k] == v
	}
}

# METADATA
# title: PeerAuthentication never turns mTLS off
# description: DISABLE or PERMISSIVE for a whole workload or namespace lets plain text in.
# custom:
#   id: SHOP-ISTIO-003
#   severity: high
#   remediation: Use STRICT; if one port must take plain text from outside the mesh, use portLevelMtls for that port only.
deny_istio_mtls_mode contains msg if {
	input.__type == peer_authentication
	mode := object.get(object.get(input.spec, "mtls", {}), "mode", "UNSET")
	mode in {"DISABLE", "PERMISSIVE"}
	msg := sprintf("%s: mTLS mode %s", [input.__name, mode])
}

# METADATA
# title: A port accepts plain text
# description: A port-level PERMISSIVE exception admits traffic from outside the mesh (advisory; the gateway's port needs it for the NLB).
# custom:
#   id: SHOP-ISTIO-004
#   severity: info
#   remediation: Keep such exceptions to the one port that faces the load balancer.
warn_istio_permissive_port contains msg if {
	input.__type == peer_authentication
	some port, setting in object.get(input.spec, "portLevelMtls", {})
	setting.mode in {"DISABLE", "PERMISSIVE"}
	msg := sprintf("%s: port %s accepts %s traffic", [input.__name, port, setting.mode])
}

# METADATA
# title: No AuthorizationPolicy allows everything
# description: An ALLOW rule with neither from nor to admits every caller to every port.
# custom:
#   id: SHOP-ISTIO-005
#   severity: high
#   remediation: Give every ALLOW rule a from (principals) or a to (ports, paths).
deny_istio_allow_all contains msg if {
	input.__type == authorization_policy
	object.get(input.spec, "action", "ALLOW") == "ALLOW"
	some rule in object.get(input.spec, "rules", [])
	not rule.from
	not rule.to
	msg := sprintf("%s: an ALLOW rule admits everything", [input.__name])
}
