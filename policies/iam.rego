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

# Roles for pull-request previews: trusted by GitHub Actions in a preview-<stack> environment,
# which any pull request of the repository may run in.
github_preview contains r if {
	some r in github_trusted
	contains(r.assumeRolePolicy, ":environment:preview-")
}

# Actions that return secret-bearing data: parameter values, log events, image layers and
# registry tokens, secret values, sampled requests with their headers, plain text from KMS.
secret_reads := {
	"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory",
	"logs:GetLogEvents", "logs:FilterLogEvents", "logs:GetLogRecord", "logs:StartQuery", "logs:GetQueryResults",
	"ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:GetAuthorizationToken",
	"secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue",
	"wafv2:GetSampledRequests", "kms:Decrypt", "rds:DownloadDBLogFilePortion", "eks:AccessKubernetesApi",
}

# AWS's public parameters (the EKS-optimized AMI's ID) are no secret.
public_parameters(secret, st) if {
	startswith(secret, "ssm:GetParameter")
	every res in as_list(st.Resource) {
		contains(res, ":parameter/aws/service/")
	}
}

# METADATA
# title: The pull-request preview role reads no secret-bearing data
# description: Any pull request of the repository runs its preview with this role; parameter values, log events, image layers or secret values it may read are readable by whoever opens a pull request.
# custom:
#   id: SHOP-IAM-002
#   severity: high
#   remediation: Give the preview role Describe and List actions and the few configuration Get actions a preview needs; ssm:GetParameter only on arn:aws:ssm:*::parameter/aws/service/*.
stack_deny_iam_preview_secret_reads contains msg if {
	some r in github_preview
	some p in input.resources
	p.__type == "aws:iam/rolePolicy:RolePolicy"
	p.role in role_refs(r)
	some st in json.unmarshal(p.policy).Statement
	object.get(st, "Effect", "Allow") == "Allow"
	some action in as_list(st.Action)
	some secret in secret_reads
	glob.match(lower(action), null, lower(secret))
	not public_parameters(secret, st)
	msg := sprintf("%s: the pull-request preview role may %s (%s, in %s): it returns secret-bearing data", [r.__name, secret, action, p.__name])
}

# The IAM actions that give a role permissions or a boundary: AWS evaluates
# iam:PermissionsBoundary for each.
role_writes := {"iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary"}

bounded(st) if {
	some test in {"StringEquals", "ArnEquals", "StringLike", "ArnLike"}
	object.get(object.get(object.get(st, "Condition", {}), test, {}), "iam:PermissionsBoundary", "") != ""
}

# METADATA
# title: Roles that GitHub Actions assume write roles only with a permissions boundary
# description: A role that may create roles or write their policies without a boundary can make a role with any permission and pass it on, which makes it an administrator in all but name.
# custom:
#   id: SHOP-IAM-003
#   severity: critical
#   remediation: Allow iam:CreateRole, PutRolePolicy, AttachRolePolicy, DetachRolePolicy, DeleteRolePolicy and PutRolePermissionsBoundary only with the condition iam:PermissionsBoundary equal to the account stack's boundary.
stack_deny_iam_role_writes_unbounded contains msg if {
	some r in github_trusted
	some p in input.resources
	p.__type == "aws:iam/rolePolicy:RolePolicy"
	p.role in role_refs(r)
	some st in json.unmarshal(p.policy).Statement
	object.get(st, "Effect", "Allow") == "Allow"
	some action in as_list(st.Action)
	some write in role_writes
	glob.match(lower(action), null, lower(write))
	not bounded(st)
	msg := sprintf("%s: trusted by GitHub Actions and may %s (%s, in %s) without a permissions boundary", [r.__name, write, action, p.__name])
}
