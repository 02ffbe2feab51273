# Tags: every taggable AWS resource says which project and environment it belongs to.
package shopmesh

import rego.v1

# The taggable AWS types the platform uses.
taggable := {
	"aws:apigateway/restApi:RestApi", "aws:apigateway/stage:Stage", "aws:apigateway/usagePlan:UsagePlan",
	"aws:apigateway/vpcLink:VpcLink", "aws:cloudwatch/logGroup:LogGroup", "aws:ec2/eip:Eip",
	"aws:ec2/internetGateway:InternetGateway", "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/natGateway:NatGateway",
	"aws:ec2/routeTable:RouteTable", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/subnet:Subnet", "aws:ec2/vpc:Vpc",
	"aws:ecr/repository:Repository", "aws:iam/role:Role", "aws:kms/key:Key", "aws:lb/listener:Listener",
	"aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup", "aws:rds/instance:Instance",
	"aws:rds/subnetGroup:SubnetGroup", "aws:wafv2/webAcl:WebAcl", "eks:index:Cluster", "eks:index:ManagedNodeGroup",
}

# METADATA
# title: AWS resources carry project and environment tags
# description: Cost reports, access policies and clean-up all select by these tags.
# custom:
#   id: SHOP-TAG-001
#   severity: low
#   remediation: Add tags project and environment (the program's common tags do this).
deny_tags_required contains msg if {
	input.__type in taggable
	some key in ["project", "environment"]
	object.get(object.get(input, "tags", {}), key, "") == ""
	msg := sprintf("%s: tag %s is missing", [input.__name, key])
}

# METADATA
# title: The environment tag names the stack
# description: A resource tagged for another environment than its stack misleads cost reports and policies.
# custom:
#   id: SHOP-TAG-002
#   severity: low
#   remediation: Set the environment tag to the stack's name.
deny_tags_environment_matches_stack contains msg if {
	input.__type in taggable
	env := input.tags.environment
	env != ""
	env != stack_of(input.__urn)
	msg := sprintf("%s: tagged environment %s in stack %s", [input.__name, env, stack_of(input.__urn)])
}
