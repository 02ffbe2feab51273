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

// DeployRole is the IAM role the GitHub Actions workflows assume through OIDC to preview and
// deploy this stack: no long-lived AWS keys anywhere.
type DeployRole struct {
	pulumi.ResourceState

	Arn pulumi.StringOutput
}

// DeployRoleArgs configures the deploy role.
type DeployRoleArgs struct {
	Config Config
}

// NewDeployRole creates the role, and the account's GitHub OIDC provider when this stack owns it
// (githubOidcProvider: create); otherwise it looks the provider up by its URL. IAM allows one
// provider per URL per account, so exactly one stack in an account may create it. Only workflow jobs of cfg.GithubRepository running in the GitHub
// environments named after the stack (deployments) or preview-<stack> (pull-request previews)
// can assume it.
func NewDeployRole(ctx *pulumi.Context, name string, args DeployRoleArgs, opts ...pulumi.ResourceOption) (*DeployRole, error) {
	cfg := args.Config
	r := &DeployRole{}
	if err := ctx.RegisterComponentResource("shopmesh:ci:DeployRole", name, r, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(r)

	var provider pulumi.StringOutput
	if cfg.GithubOidcProvider == "existing" {
		provider = iam.LookupOpenIdConnectProviderOutput(ctx, iam.LookupOpenIdConnectProviderOutputArgs{
			Url: pulumi.String(GithubOIDCURL),
		}, parent).Arn()
	} else {
		p, err := iam.NewOpenIdConnectProvider(ctx, name+"-github", &iam.OpenIdConnectProviderArgs{
			Url:           pulumi.String(GithubOIDCURL),
			ClientIdLists: pulumi.StringArray{pulumi.String("sts.amazonaws.com")},
			// AWS verifies GitHub's certificate against its trusted CAs; the thumbprint is
			// still a required argument of the API.
			ThumbprintLists: pulumi.StringArray{pulumi.String("6938fd4d98bab03faadb97b34396831e3780aea1")},
			Tags:            cfg.Tags("github-oidc"),
		}, parent)
		if err != nil {
			return nil, err
		}
		provider = p.Arn
	}
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
						fmt.Sprintf("repo:%s:environment:%s", cfg.GithubRepository, cfg.Stack),
						fmt.Sprintf("repo:%s:environment:preview-%s", cfg.GithubRepository, cfg.Stack),
					})},
			},
		},
	}}, parent).Json()
	role, err := iam.NewRole(ctx, name, &iam.RoleArgs{
		Name:               pulumi.String(cfg.Name("deploy")),
		Description:        pulumi.String("GitHub Actions of " + cfg.GithubRepository + " deploying stack " + cfg.Stack),
		AssumeRolePolicy:   trust,
		MaxSessionDuration: pulumi.Int(3600),
		Tags:               cfg.Tags("deploy"),
	}, parent)
	if err != nil {
		return nil, err
	}
	// pulumi up creates IAM roles, EKS clusters and everything else here; narrowing this to
	// the program's actions is future work (README: The pipeline).
	if _, err := iam.NewRolePolicyAttachment(ctx, name, &iam.RolePolicyAttachmentArgs{
		Role: role.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/AdministratorAccess"),
	}, parent); err != nil {
		return nil, err
	}
	r.Arn = role.Arn
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{"arn": role.Arn}); err != nil {
		return nil, err
	}
	return r, nil
}
