# Helpers shared by the rules. Not rules themselves: the analyzer only runs names starting
# with deny_, violation_, warn_, stack_deny_ or stack_warn_.
package shopmesh

import rego.v1

# The stack a resource belongs to, from its URN (urn:pulumi:<stack>::<project>::<type>::<name>).
stack_of(urn) := stack if {
	parts := split(urn, "::")
	stack := trim_prefix(parts[0], "urn:pulumi:")
}

# Production: the stack is named prod, or the resource says so in its environment tag.
is_prod if stack_of(input.__urn) == "prod"

is_prod if input.tags.environment == "prod"

prod_resource(r) if stack_of(r.__urn) == "prod"

prod_resource(r) if r.tags.environment == "prod"

# pulumi-eks: under mocks the component arrives with its args; a real preview also shows
# the aws:eks/cluster:Cluster it creates. Rules read whichever they are given.
eks_component := "eks:index:Cluster"

eks_cluster := "aws:eks/cluster:Cluster"

# Booleans may arrive as strings ("true") from some providers' inputs.
truthy(v) if v == true

truthy(v) if v == "true"

# Open to the internet.
anywhere(cidr) if cidr in {"0.0.0.0/0", "::/0"}

# A reference to resource r: its URN, or the "<name>-id" the offline mocks give it.
refers_to(ref, r) if ref == r.__urn

refers_to(ref, r) if ref == sprintf("%s-id", [r.__name])

# The Deployments' pod templates and their containers.
containers contains c if {
	input.__type == "kubernetes:apps/v1:Deployment"
	some c in input.spec.template.spec.containers
}
