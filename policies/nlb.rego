# Network load balancer: internal only, behind a security group; deletion protection in prod.
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

# METADATA
# title: The NLB has a security group
# description: Without one, anything in the VPC reaches the NLB's listeners, past API Gateway's throttles and WAF; and a group cannot be added to an NLB created without one.
# custom:
#   id: SHOP-NLB-003
#   severity: high
#   remediation: Create the network load balancer with securityGroups (no inbound rule; for a VPC link, enforceSecurityGroupInboundRulesOnPrivateLinkTraffic off), and let its targets admit that group.
deny_nlb_security_group contains msg if {
	input.__type in {"aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"}
	object.get(input, "loadBalancerType", "application") == "network"
	count(object.get(input, "securityGroups", [])) == 0
	msg := sprintf("%s: the network load balancer has no security group: anything in the VPC reaches it", [input.__name])
}
