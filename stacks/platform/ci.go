package platform

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// GithubOIDCIssuer is the host of GitHub Actions' OIDC tokens; GithubOIDCURL is the URL the
// account's IAM OIDC provider is registered under.
const (
	GithubOIDCIssuer = "token.actions.githubusercontent.com"
	GithubOIDCURL    = "https://" + GithubOIDCIssuer
)

// DeployRole holds the two IAM roles GitHub Actions assume through OIDC (no long-lived AWS keys
// anywhere): the deploy role, with the permissions pulumi up needs, for jobs in the GitHub
// environment named after the stack; and the preview role, read-only, for pull-request jobs in
// preview-<stack>. Neither environment can assume the other's role.
type DeployRole struct {
	pulumi.ResourceState

	Arn        pulumi.StringOutput // the deploy role
	PreviewArn pulumi.StringOutput // the preview role
}

// DeployRoleArgs configures the roles.
type DeployRoleArgs struct {
	Config Config
}

// DeployServices are the AWS services whose resources and data sources the program uses, by the
// module of their Pulumi type token (aws:<module>/…), with the IAM action prefixes each needs.
// IAM itself is granted action by action (deployIAMActions).
var DeployServices = map[string][]string{
	"apigateway":     {"apigateway"},
	"cloudwatch":     {"logs", "cloudwatch"},
	"ec2":            {"ec2"},
	"ecr":            {"ecr"},
	"eks":            {"eks"},
	"elasticache":    {"elasticache"},
	"kms":            {"kms"},
	"lb":             {"elasticloadbalancing"},
	"rds":            {"rds"},
	"secretsmanager": {"secretsmanager"}, // RDS creates the managed master secret as the caller
	"sns":            {"sns"},
	"ssm":            {"ssm"},
	"wafv2":          {"wafv2"},
}

// deployIAMReads are the IAM reads a deploy needs (roles, policies, providers, the boundary).
var deployIAMReads = []string{"iam:Get*", "iam:List*"}

// deployRoleUpkeep are the IAM actions on this stack's own roles and instance profiles for which
// AWS has no boundary condition: allowed only on what carries the stack's environment tag
// (aws:ResourceTag), which pulumi-eks's roles carry too (its tags apply to what it creates).
var deployRoleUpkeep = []string{"iam:DeleteRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:UntagRole",
	"iam:DeleteInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:UntagInstanceProfile"}

// deployTagging create instance profiles and tag roles and profiles, also while they are being
// created (CreateRole with tags needs iam:TagRole, when there is no resource tag to compare yet):
// a tag written must name the stack and a tagged resource must be the stack's, where either
// exists (IfExists), so no other stack's role or profile is retagged into this one's.
var deployTagging = []string{"iam:CreateInstanceProfile", "iam:TagRole", "iam:TagInstanceProfile"}

// deployOIDCActions: the cluster's own OIDC provider (IRSA), which pulumi-eks creates per cluster.
var deployOIDCActions = []string{"iam:CreateOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint",
	"iam:AddClientIDToOpenIDConnectProvider", "iam:RemoveClientIDFromOpenIDConnectProvider", "iam:TagOpenIDConnectProvider", "iam:UntagOpenIDConnectProvider"}

// passedToServices are the services the program hands roles to (iam:PassRole).
var passedToServices = []string{"eks.amazonaws.com", "ec2.amazonaws.com", "apigateway.amazonaws.com", "rds.amazonaws.com"}

// linkedServices are the services whose service-linked roles a first deploy in an account creates.
var linkedServices = []string{"eks.amazonaws.com", "eks-nodegroup.amazonaws.com", "elasticloadbalancing.amazonaws.com",
	"rds.amazonaws.com", "autoscaling.amazonaws.com"}

// NewDeployRole creates both roles, trusting the account's GitHub OIDC provider, which the account
// stack owns (AccountProgram) and this one looks up by its URL.
func NewDeployRole(ctx *pulumi.Context, name string, args DeployRoleArgs, opts ...pulumi.ResourceOption) (*DeployRole, error) {
	cfg := args.Config
	r := &DeployRole{}
	if err := ctx.RegisterComponentResource("shopmesh:ci:DeployRole", name, r, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(r)

	// The account stack owns the provider (IAM allows one per URL per account).
	provider := iam.LookupOpenIdConnectProviderOutput(ctx, iam.LookupOpenIdConnectProviderOutputArgs{
		Url: pulumi.String(GithubOIDCURL),
	}, parent).Arn()
	role := func(resName, environment, description string, statements iam.GetPolicyDocumentStatementArray) (*iam.Role, error) {
		trust := iam.GetPolicyDocumentOutput(ctx, iam.GetPolicyDocumentOutputArgs{Statements: iam.GetPolicyDocumentStatementArray{
			iam.GetPolicyDocumentStatementArgs{
				Actions: pulumi.ToStringArray([]string{"sts:AssumeRoleWithWebIdentity"}),
				Principals: iam.GetPolicyDocumentStatementPrincipalArray{iam.GetPolicyDocumentStatementPrincipalArgs{
					Type: pulumi.String("Federated"), Identifiers: pulumi.StringArray{provider},
				}},
				Conditions: iam.GetPolicyDocumentStatementConditionArray{
					iam.GetPolicyDocumentStatementConditionArgs{Test: pulumi.String("StringEquals"),
						Variable: pulumi.String(GithubOIDCIssuer + ":aud"), Values: pulumi.ToStringArray([]string{"sts.amazonaws.com"})},
					iam.GetPolicyDocumentStatementConditionArgs{Test: pulumi.String("StringEquals"),
						Variable: pulumi.String(GithubOIDCIssuer + ":sub"), Values: pulumi.ToStringArray([]string{
							fmt.Sprintf("repo:%s:environment:%s", cfg.GithubRepository, environment),
						})},
				},
			},
		}}, parent).Json()
		ro, err := iam.NewRole(ctx, resName, &iam.RoleArgs{
			Name:                pulumi.String(cfg.Name(resName)),
			Description:         pulumi.String(description),
			AssumeRolePolicy:    trust,
			MaxSessionDuration:  pulumi.Int(3600),
			PermissionsBoundary: pulumi.String(cfg.BoundaryArn),
			Tags:                cfg.Tags(resName),
		}, parent)
		if err != nil {
			return nil, err
		}
		permissions := iam.GetPolicyDocumentOutput(ctx, iam.GetPolicyDocumentOutputArgs{Statements: statements}, parent)
		if _, err := iam.NewRolePolicy(ctx, resName, &iam.RolePolicyArgs{Role: ro.ID(), Policy: permissions.Json()}, parent); err != nil {
			return nil, err
		}
		return ro, nil
	}
	deploy, err := role("deploy", cfg.Stack, "GitHub Actions of "+cfg.GithubRepository+" deploying stack "+cfg.Stack, deployStatements(cfg))
	if err != nil {
		return nil, err
	}
	preview, err := role("preview", "preview-"+cfg.Stack, "GitHub Actions of "+cfg.GithubRepository+" previewing stack "+cfg.Stack+" for pull requests", previewStatements(cfg))
	if err != nil {
		return nil, err
	}
	r.Arn, r.PreviewArn = deploy.Arn, preview.Arn
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{"arn": deploy.Arn, "previewArn": preview.Arn}); err != nil {
		return nil, err
	}
	return r, nil
}

func statement(sid string, actions []string, resources ...string) iam.GetPolicyDocumentStatementArgs {
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	return iam.GetPolicyDocumentStatementArgs{Sid: pulumi.String(sid), Actions: pulumi.ToStringArray(actions), Resources: pulumi.ToStringArray(resources)}
}

func condition(test, variable string, values ...string) iam.GetPolicyDocumentStatementConditionArray {
	return iam.GetPolicyDocumentStatementConditionArray{iam.GetPolicyDocumentStatementConditionArgs{
		Test: pulumi.String(test), Variable: pulumi.String(variable), Values: pulumi.ToStringArray(values),
	}}
}

func sortedPrefixes() []string {
	var out []string
	for _, module := range sortedKeys(DeployServices) {
		out = append(out, DeployServices[module]...)
	}
	return out
}

// deployStatements: every action of the services the program manages; in IAM, roles only with
// the account's boundary (iam:PermissionsBoundary), the upkeep of this stack's own roles by their
// environment tag, the cluster's OIDC provider; roles passed only to the services that use them.
func deployStatements(cfg Config) iam.GetPolicyDocumentStatementArray {
	var services []string
	for _, prefix := range sortedPrefixes() {
		services = append(services, prefix+":*")
	}
	pass := statement("PassRolesToTheirServices", []string{"iam:PassRole"})
	pass.Conditions = condition("StringEquals", "iam:PassedToService", passedToServices...)
	linked := statement("ServiceLinkedRoles", []string{"iam:CreateServiceLinkedRole"})
	linked.Conditions = condition("StringEquals", "iam:AWSServiceName", linkedServices...)
	bounded := statement("RolesOnlyWithTheBoundary", roleWrites)
	bounded.Conditions = condition("StringEquals", "iam:PermissionsBoundary", cfg.BoundaryArn)
	upkeep := statement("UpkeepOfThisStacksRoles", deployRoleUpkeep)
	upkeep.Conditions = condition("StringEquals", "aws:ResourceTag/environment", cfg.Environment)
	tagging := statement("TagThisStacksRoles", deployTagging)
	tagging.Conditions = append(condition("StringEqualsIfExists", "aws:ResourceTag/environment", cfg.Environment),
		condition("StringEqualsIfExists", "aws:RequestTag/environment", cfg.Environment)...)
	return iam.GetPolicyDocumentStatementArray{
		statement("ManagedServices", services),
		bounded, upkeep, tagging,
		statement("IAMReads", deployIAMReads),
		statement("ClusterOidcProvider", deployOIDCActions),
		pass, linked,
		statement("WhoAmI", []string{"sts:GetCallerIdentity"}),
	}
}

// previewStatements: what a preview reads, and an SSM session to this stack's API tunnel so that
// the preview reaches the Kubernetes API. A pull-request job assumes this role, so it gets no
// action that returns secret-bearing data: no parameter values (ssm:GetParameter* outside AWS's
// public parameters), log events (logs:Get*, logs:FilterLogEvents), image layers or registry
// tokens (ecr:Get*, ecr:BatchGetImage), secret values, sampled requests, decryption.
func previewStatements(cfg Config) iam.GetPolicyDocumentStatementArray {
	var read []string
	for _, prefix := range sortedPrefixes() {
		read = append(read, prefix+":Describe*", prefix+":List*")
	}
	read = append(read, previewGets...)
	tunnel := statement("SessionToTheApiTunnel", []string{"ssm:StartSession"}, "arn:aws:ec2:*:*:instance/*")
	tunnel.Conditions = condition("StringEquals", "aws:ResourceTag/Name", cfg.Name("api-tunnel"))
	return iam.GetPolicyDocumentStatementArray{
		statement("ReadManagedServices", read),
		// The EKS-optimized AMI's ID, which the node group looks up (AWS's public parameters).
		statement("PublicParameters", []string{"ssm:GetParameter", "ssm:GetParameters"}, "arn:aws:ssm:*::parameter/aws/service/*"),
		tunnel,
		statement("PortForwardingDocument", []string{"ssm:StartSession"}, "arn:aws:ssm:*::document/AWS-StartPortForwardingSessionToRemoteHost"),
		statement("EndOwnSessions", []string{"ssm:TerminateSession", "ssm:ResumeSession"}, "arn:aws:ssm:*:*:session/${aws:userid}-*"),
	}
}

// previewGets are the Get actions a preview needs that return configuration, not data: API
// Gateway's reads (its actions are HTTP verbs), IAM (the OIDC provider lookup, roles and their
// policies), key and topic settings, the web ACL.
var previewGets = []string{
	"apigateway:GET", "iam:Get*", "iam:List*", "sts:GetCallerIdentity",
	"kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "sns:GetTopicAttributes", "sns:GetSubscriptionAttributes",
	"wafv2:GetWebACL", "wafv2:GetWebACLForResource", "ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy",
	"elasticache:DescribeUsers", "eks:DescribeAddonVersions",
}
