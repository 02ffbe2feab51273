package platform

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/apigateway"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// AccountProject is the Pulumi project (account/Pulumi.yaml) that owns what exists once per AWS
// account. It is deployed once, before dev and prod; they look up what they need from it and
// never create, change or delete it, so that destroying one environment leaves the other whole.
const AccountProject = "shopmesh-account"

// BoundaryName is the account's permissions boundary: every role the environment stacks create
// carries it, and the deploy roles may create or change roles only with it attached.
const BoundaryName = "shopmesh-boundary"

// AccountProgram declares the account's GitHub OIDC provider (IAM allows one per URL per
// account), API Gateway's account-wide CloudWatch role and setting (one per account and region),
// and the permissions boundary.
func AccountProgram(ctx *pulumi.Context) (map[string]pulumi.Input, error) {
	tags := pulumi.StringMap{"project": pulumi.String("shopmesh"), "managed-by": pulumi.String("pulumi"), "environment": pulumi.String("account")}
	provider, err := iam.NewOpenIdConnectProvider(ctx, "github", &iam.OpenIdConnectProviderArgs{
		Url:           pulumi.String(GithubOIDCURL),
		ClientIdLists: pulumi.StringArray{pulumi.String("sts.amazonaws.com")},
		// AWS verifies GitHub's certificate against its trusted CAs; the thumbprint is still a
		// required argument of the API.
		ThumbprintLists: pulumi.StringArray{pulumi.String("6938fd4d98bab03faadb97b34396831e3780aea1")},
		Tags:            tags,
	})
	if err != nil {
		return nil, err
	}
	assume, err := serviceTrust(ctx, "apigateway.amazonaws.com")
	if err != nil {
		return nil, err
	}
	role, err := iam.NewRole(ctx, "apigateway-cloudwatch", &iam.RoleArgs{
		Name: pulumi.String("shopmesh-apigateway-cloudwatch"), AssumeRolePolicy: pulumi.String(assume), Tags: tags,
	})
	if err != nil {
		return nil, err
	}
	attachment, err := iam.NewRolePolicyAttachment(ctx, "apigateway-cloudwatch", &iam.RolePolicyAttachmentArgs{
		Role: role.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"),
	})
	if err != nil {
		return nil, err
	}
	if _, err := apigateway.NewAccount(ctx, "apigateway", &apigateway.AccountArgs{CloudwatchRoleArn: role.Arn},
		pulumi.DependsOn([]pulumi.Resource{attachment})); err != nil {
		return nil, err
	}
	caller, err := callerAccount(ctx)
	if err != nil {
		return nil, err
	}
	boundary, err := iam.NewPolicy(ctx, "boundary", &iam.PolicyArgs{
		Name:        pulumi.String(BoundaryName),
		Description: pulumi.String("the most any role of the shopmesh stacks may do; the deploy roles create roles only with it"),
		Policy:      iam.GetPolicyDocumentOutput(ctx, iam.GetPolicyDocumentOutputArgs{Statements: boundaryStatements(boundaryArn(caller))}).Json(),
		Tags:        tags,
	})
	if err != nil {
		return nil, err
	}
	return map[string]pulumi.Input{
		"githubOidcProviderArn":       provider.Arn,
		"apiGatewayCloudwatchRoleArn": role.Arn,
		"permissionsBoundaryArn":      boundary.Arn,
	}, nil
}

// RunAccount is account/main.go's entry point.
func RunAccount(ctx *pulumi.Context) error { return exported(ctx, AccountProgram) }

type account struct{ partition, id string }

func callerAccount(ctx *pulumi.Context, opts ...pulumi.InvokeOption) (account, error) {
	id, err := aws.GetCallerIdentity(ctx, nil, opts...)
	if err != nil {
		return account{}, err
	}
	part, err := aws.GetPartition(ctx, nil, opts...)
	if err != nil {
		return account{}, err
	}
	return account{partition: part.Partition, id: id.AccountId}, nil
}

func boundaryArn(a account) string {
	return fmt.Sprintf("arn:%s:iam::%s:policy/%s", a.partition, a.id, BoundaryName)
}

// lookupBoundary is the account stack's boundary, which must exist before an environment's
// first pulumi up: the preview fails here, saying so, rather than at the first role.
func lookupBoundary(ctx *pulumi.Context) (string, error) {
	p, err := iam.LookupPolicy(ctx, &iam.LookupPolicyArgs{Name: pulumi.StringRef(BoundaryName)})
	if err != nil {
		return "", fmt.Errorf("the permissions boundary %s of the account stack: %w; deploy the account stack first (make deploy-account)", BoundaryName, err)
	}
	if p.Arn == "" {
		return "", errors.New("the permissions boundary " + BoundaryName + " has no ARN")
	}
	return p.Arn, nil
}

// roleWrites are the IAM actions that give a role permissions or a boundary; AWS evaluates the
// iam:PermissionsBoundary condition key for each (IAM User Guide, "Permissions boundaries for IAM
// entities": delegating responsibility to others).
var roleWrites = []string{"iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy",
	"iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary"}

// boundaryStatements: the services the platform's roles use, and never a role without this
// boundary, a change to the boundary, or an IAM user or access key.
func boundaryStatements(arn string) iam.GetPolicyDocumentStatementArray {
	services := []string{"sts:*", "iam:*", "xray:*", "autoscaling:*", "ssmmessages:*", "ec2messages:*", "elasticache:Connect", "rds-db:connect"}
	for _, prefix := range sortedPrefixes() {
		services = append(services, prefix+":*")
	}
	withoutBoundary := statement("NoRoleWithoutThisBoundary", roleWrites)
	withoutBoundary.Effect = pulumi.String("Deny")
	withoutBoundary.Conditions = condition("StringNotEquals", "iam:PermissionsBoundary", arn)
	keep := statement("ThisBoundaryStays", []string{"iam:DeleteRolePermissionsBoundary"})
	keep.Effect = pulumi.String("Deny")
	unchanged := statement("ThisBoundaryIsUnchanged", []string{"iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
		"iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"}, arn)
	unchanged.Effect = pulumi.String("Deny")
	users := statement("NoUsersOrKeys", []string{"iam:*User*", "iam:*AccessKey*", "iam:*LoginProfile*", "iam:*Group*", "iam:CreatePolicy*"})
	users.Effect = pulumi.String("Deny")
	return iam.GetPolicyDocumentStatementArray{statement("PlatformServices", services), withoutBoundary, keep, unchanged, users}
}
