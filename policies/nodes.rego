# Worker nodes: private subnets, IMDSv2 with a hop limit of 1, no public IPs, encrypted disks.
package shopmesh

import rego.v1

node_group_types := {"eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup"}

# METADATA
# title: Node groups run in private subnets
# description: Nodes in a public subnet (public IPs, internet-facing load balancers) would be reachable from the internet.
# custom:
#   id: SHOP-NODE-001
#   severity: high
#   remediation: Give the node group the private subnets only (mapPublicIpOnLaunch false, routed through NAT).
stack_deny_nodes_public_subnets contains msg if {
	some ng in input.resources
	ng.__type in node_group_types
	some subnet in input.resources
	public_subnet(subnet)
	node_group_uses_subnet(ng, subnet)
	msg := sprintf("%s: runs nodes in public subnet %s", [ng.__name, subnet.__name])
}

# Public: it maps public IPs, or it is tagged for internet-facing load balancers (EKS's
# convention for public subnets, which route to the internet gateway).
public_subnet(s) if {
	s.__type == "aws:ec2/subnet:Subnet"
	truthy(s.mapPublicIpOnLaunch)
}

public_subnet(s) if {
	s.__type == "aws:ec2/subnet:Subnet"
	s.tags["kubernetes.io/role/elb"]
}

node_group_uses_subnet(ng, subnet) if {
	some ref in ng.subnetIds
	refers_to(ref, subnet)
}

# A real preview knows subnet ids only later, but records which resources fed subnetIds.
node_group_uses_subnet(ng, subnet) if {
	some ref in ng.propertyDependencies.subnetIds
	refers_to(ref, subnet)
}

# METADATA
# title: Nodes require IMDSv2
# description: Session tokens for the instance metadata service block SSRF-style credential theft.
# custom:
#   id: SHOP-NODE-002
#   severity: high
#   remediation: Set metadataOptions.httpTokens to "required" in the node launch template.
deny_nodes_imdsv2 contains msg if {
	input.__type == "aws:ec2/launchTemplate:LaunchTemplate"
	object.get(object.get(input, "metadataOptions", {}), "httpTokens", "optional") != "required"
	msg := sprintf("%s: IMDSv2 is not required (metadataOptions.httpTokens)", [input.__name])
}

# METADATA
# title: Pods cannot reach the node's metadata service
# description: A hop limit of 1 keeps containers from using the node role's credentials; pods use IRSA.
# custom:
#   id: SHOP-NODE-003
#   severity: medium
#   remediation: Set metadataOptions.httpPutResponseHopLimit to 1.
deny_nodes_imds_hop_limit contains msg if {
	input.__type == "aws:ec2/launchTemplate:LaunchTemplate"
	hops := object.get(object.get(input, "metadataOptions", {}), "httpPutResponseHopLimit", 2)
	hops > 1
	msg := sprintf("%s: metadata hop limit is %v, want 1", [input.__name, hops])
}

# METADATA
# title: Nodes get no public IP addresses
# description: Nodes are reached through the load balancer and the mesh, never directly.
# custom:
#   id: SHOP-NODE-004
#   severity: high
#   remediation: Remove associatePublicIpAddress from the launch template (or set nodeAssociatePublicIpAddress false).
deny_nodes_public_ip contains msg if {
	input.__type == "aws:ec2/launchTemplate:LaunchTemplate"
	some nic in object.get(input, "networkInterfaces", [])
	truthy(nic.associatePublicIpAddress)
	msg := sprintf("%s: network interfaces get a public IP", [input.__name])
}

deny_nodes_public_ip contains msg if {
	input.__type == eks_component
	truthy(input.nodeAssociatePublicIpAddress)
	msg := sprintf("%s: nodeAssociatePublicIpAddress gives nodes public IPs", [input.__name])
}

# METADATA
# title: Node volumes are encrypted
# description: EBS volumes of the nodes hold container images and emptyDir data.
# custom:
#   id: SHOP-NODE-005
#   severity: medium
#   remediation: Set ebs.encrypted to true for every block device in the launch template.
deny_nodes_ebs_encryption contains msg if {
	input.__type == "aws:ec2/launchTemplate:LaunchTemplate"
	some bd in object.get(input, "blockDeviceMappings", [])
	not truthy(object.get(object.get(bd, "ebs", {}), "encrypted", false))
	msg := sprintf("%s: volume %s is not encrypted", [input.__name, object.get(bd, "deviceName", "?")])
}
