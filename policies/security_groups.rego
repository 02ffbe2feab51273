# Security groups: no admin ports open to the internet, no all-ports ingress.
package shopmesh

import rego.v1

admin_ports := {22, 3389, 5432, 3306, 6379, 6443}

# Every ingress rule, whether inline in a security group or a separate resource.
ingress_rules contains rule if {
	input.__type == "aws:ec2/securityGroup:SecurityGroup"
	some rule in object.get(input, "ingress", [])
}

ingress_rules contains input if {
	input.__type == "aws:ec2/securityGroupRule:SecurityGroupRule"
	input.type == "ingress"
}

ingress_rules contains rule if {
	input.__type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
	rule := {"cidrBlocks": [object.get(input, "cidrIpv4", "")], "ipv6CidrBlocks": [object.get(input, "cidrIpv6", "")],
		"fromPort": object.get(input, "fromPort", 0), "toPort": object.get(input, "toPort", 0), "protocol": input.ipProtocol}
}

rule_sources(rule) := array.concat(object.get(rule, "cidrBlocks", []), object.get(rule, "ipv6CidrBlocks", []))

all_ports(rule) if rule.protocol in {"-1", "all"}

all_ports(rule) if {
	object.get(rule, "fromPort", 0) == 0
	object.get(rule, "toPort", 0) == 65535
}

# METADATA
# title: No admin or database port is open to the internet
# description: SSH, RDP, database and Kubernetes API ports accept traffic only from known networks.
# custom:
#   id: SHOP-SG-001
#   severity: critical
#   remediation: Restrict the rule's cidrBlocks to the VPC or a security group; use SSM instead of SSH.
deny_sg_admin_ports_open contains msg if {
	some rule in ingress_rules
	some cidr in rule_sources(rule)
	anywhere(cidr)
	some port in admin_ports
	port >= object.get(rule, "fromPort", 0)
	port <= object.get(rule, "toPort", 65535)
	msg := sprintf("%s: port %v is open to %s", [input.__name, port, cidr])
}

# METADATA
# title: No ingress rule opens every port
# description: Ingress names the ports a service needs; protocol -1 or 0-65535 from an address range opens everything.
# custom:
#   id: SHOP-SG-002
#   severity: high
#   remediation: List the needed ports, or reference a security group instead of a CIDR.
deny_sg_all_ports contains msg if {
	some rule in ingress_rules
	all_ports(rule)
	count([c | some c in rule_sources(rule); c != ""]) > 0
	msg := sprintf("%s: an ingress rule opens every port to %v", [input.__name, [c | some c in rule_sources(rule); c != ""]])
}
