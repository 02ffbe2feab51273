# IAM: what a CI pipeline's identity may do.
package shopmesh

import rego.v1

github_issuer := "token.actions.githubusercontent.com"

# Roles whose trust policy admits GitHub Actions' OIDC tokens.
github_trusted contains r if {
	some r in input.resources
	r.__type == "aws:iam/role:Role"
	contains(r.assumeRolePolicy, github_issuer)
}

# The names a role is referred to by: its name input, or the mock ID of the resource.
role_refs(r) := {object.get(r, "name", ""), sprintf("%s-id", [r.__name]), r.__name}

# METADATA
# title: Roles that GitHub Actions assume are not administrators
# description: Whoever can run a workflow in the trusted repository and environment gets the role; with AdministratorAccess (or an inline "*" grant) that is the whole account.
# custom:
#   id: SHOP-IAM-001
#   severity: critical
#   remediation: Grant the deploy role the actions of the services the program manages, and give pull-request previews a separate read-only role.
stack_deny_iam_github_admin contains msg if {
	some r in github_trusted
	some a in input.resources
	a.__type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
	a.role in role_refs(r)
	endswith(a.policyArn, ":policy/AdministratorAccess")
	msg := sprintf("%s: trusted by GitHub Actions and attached to AdministratorAccess", [r.__name])
}

stack_deny_iam_github_admin contains msg if {
	some r in github_trusted
	some p in input.resources
	p.__type == "aws:iam/rolePolicy:RolePolicy"
	p.role in role_refs(r)
	some st in json.unmarshal(p.policy).Statement
	object.get(st, "Effect", "Allow") == "Allow"
	some action in as_list(st.Action)
	action in {"*", "iam:*"}
	msg := sprintf("%s: trusted by GitHub Actions and granted %s by %s", [r.__name, action, p.__name])
}

as_list(x) := x if is_array(x)

as_list(x) := [x] if is_string(x)
