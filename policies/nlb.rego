# Network load balancer: internal only; deletion protection in prod.
package shopmesh

import rego.v1

# METADATA
# title: The NLB is internal
# description: API Gateway reaches the cluster through a VPC link; nothing reaches the NLB from the internet.
# custom:
#   id: SHOP-NLB-001
#   severity: high
#   remediation: Set internal to true on the network load balancer.
deny_nlb_internal contains msg if {
	input.__type in {"aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"}
	object.get(input, "loadBalancerType", "application") == "network"
	not truthy(object.get(input, "internal", false))
	msg := sprintf("%s: the network load balancer faces the internet", [input.__name])
}

# METADATA
# title: The production NLB has deletion protection
# description: The prod entry point cannot be deleted by a mistaken update.
# custom:
#   id: SHOP-NLB-002
#   severity: medium
#   remediation: Set enableDeletionProtection to true in prod.
deny_nlb_deletion_protection_prod contains msg if {
	input.__type in {"aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"}
	is_prod
	not truthy(object.get(input, "enableDeletionProtection", false))
	msg := sprintf("%s: the prod load balancer has no deletion protection", [input.__name])
}
