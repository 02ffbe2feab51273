package platform

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

var (
	accountOnce sync.Once
	accountP    *Plan
	accountErr  error
)

// accountPlan is the offline plan of the account project (account/Pulumi.yaml, stack main).
func accountPlan(t *testing.T) *Plan {
	t.Helper()
	accountOnce.Do(func() { accountP, accountErr = PlanStack("../../account", "main", nil, AccountProgram) })
	if accountErr != nil {
		t.Fatal(accountErr)
	}
	return accountP
}

// accountWide are the resources that exist once per account (or per account and region).
// (the GitHub OIDC provider is one per URL; a cluster's own IRSA provider is per cluster).
var accountWide = []string{"aws:apigateway/account:Account", "aws:iam/policy:Policy"}

// TestAccountStackOwnsWhatExistsOncePerAccount: the account stack declares the GitHub OIDC
// provider, API Gateway's CloudWatch setting and the boundary; dev and prod declare none of them
// (the cluster's own IRSA provider is per cluster), and look up what they need.
func TestAccountStackOwnsWhatExistsOncePerAccount(t *testing.T) {
	a := accountPlan(t)
	if p := named(t, a, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "github"); p.Inputs["url"] != GithubOIDCURL {
		t.Errorf("the account's OIDC provider is for %v", p.Inputs["url"])
	}
	if acc := one(t, a, "aws:apigateway/account:Account"); !strings.Contains(fmt.Sprint(acc.Inputs["cloudwatchRoleArn"]), "role/shopmesh-apigateway-cloudwatch") {
		t.Errorf("API Gateway's account setting = %v", acc.Inputs)
	}
	boundary := named(t, a, "aws:iam/policy:Policy", "boundary")
	if boundary.Inputs["name"] != BoundaryName {
		t.Errorf("the boundary is named %v, want %s", boundary.Inputs["name"], BoundaryName)
	}
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		for _, r := range p.Resources {
			if slices.Contains(accountWide, r.Type) || r.Type == "aws:iam/openIdConnectProvider:OpenIdConnectProvider" && r.Inputs["url"] == GithubOIDCURL {
				t.Errorf("%s declares %s %s, which the account stack owns: destroying it would break the other environment", p.Stack, r.Type, r.Name)
			}
		}
		looked := false
		for _, call := range p.Invokes {
			looked = looked || call.Token == "aws:iam/getPolicy:getPolicy" && call.Args["name"] == BoundaryName
		}
		if !looked {
			t.Errorf("%s does not look up the account's boundary", p.Stack)
		}
	})
}

// TestBoundaryForbidsEscalation: under the boundary, no role can create or change a role that
// lacks it, remove it, change the boundary policy, or make users and keys.
func TestBoundaryForbidsEscalation(t *testing.T) {
	boundary := named(t, accountPlan(t), "aws:iam/policy:Policy", "boundary")
	arn := "arn:aws:iam::" + fakeAccount + ":policy/" + BoundaryName
	denied := map[string]bool{}
	for _, st := range statements(t, boundary.Inputs["policy"]) {
		if st.Effect != "Deny" {
			continue
		}
		for _, a := range asStrings(st.Action) {
			switch {
			case st.Condition["StringNotEquals"]["iam:PermissionsBoundary"] != nil:
				if slices.Equal(asStrings(st.Condition["StringNotEquals"]["iam:PermissionsBoundary"]), []string{arn}) {
					denied[a+" without the boundary"] = true
				}
			case slices.Equal(asStrings(st.Resource), []string{arn}):
				denied[a+" on the boundary"] = true
			default:
				denied[a] = true
			}
		}
	}
	for _, a := range roleWrites {
		if !denied[a+" without the boundary"] {
			t.Errorf("the boundary lets a role %s without the boundary", a)
		}
	}
	for _, want := range []string{"iam:DeleteRolePermissionsBoundary", "iam:CreatePolicyVersion on the boundary", "iam:DeletePolicy on the boundary", "iam:*User*", "iam:*AccessKey*"} {
		if !denied[want] {
			t.Errorf("the boundary does not deny %s", want)
		}
	}
}

// TestRolesCarryTheBoundary: every role an environment creates has the account's boundary, and
// the deploy role may write roles only with it attached and keep up only its own stack's roles.
func TestRolesCarryTheBoundary(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		arn := "arn:aws:iam::" + fakeAccount + ":policy/" + BoundaryName
		for _, r := range p.ByType("aws:iam/role:Role") {
			if r.StandIn {
				continue // pulumi-eks's: the boundary comes by a resource transform (withBoundary)
			}
			if r.Inputs["permissionsBoundary"] != arn {
				t.Errorf("role %s has boundary %v, want %s", r.Name, r.Inputs["permissionsBoundary"], arn)
			}
		}
		for _, st := range statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", "deploy").Inputs["policy"]) {
			for _, a := range asStrings(st.Action) {
				if !strings.HasPrefix(a, "iam:") || strings.HasPrefix(a, "iam:Get") || strings.HasPrefix(a, "iam:List") {
					continue
				}
				bounded := slices.Equal(asStrings(st.Condition["StringEquals"]["iam:PermissionsBoundary"]), []string{arn})
				ownTag := slices.Equal(asStrings(st.Condition["StringEquals"]["aws:ResourceTag/environment"]), []string{p.Stack}) ||
					slices.Equal(asStrings(st.Condition["StringEqualsIfExists"]["aws:ResourceTag/environment"]), []string{p.Stack}) &&
						slices.Equal(asStrings(st.Condition["StringEqualsIfExists"]["aws:RequestTag/environment"]), []string{p.Stack})
				switch {
				case slices.Contains(roleWrites, a) && !bounded:
					t.Errorf("the deploy role may %s without the boundary condition", a)
				case strings.Contains(a, "Role") && a != "iam:PassRole" && a != "iam:CreateServiceLinkedRole" && !bounded && !ownTag:
					t.Errorf("the deploy role may %s on roles that are not its stack's", a)
				}
			}
		}
	})
}

// TestBoundaryTransform: pulumi-eks's own roles get the boundary through withBoundary, which
// leaves every other resource alone.
func TestBoundaryTransform(t *testing.T) {
	transform := withBoundary("arn:aws:iam::1:policy/b")
	role := &pulumi.ResourceTransformArgs{Type: "aws:iam/role:Role", Props: pulumi.Map{"name": pulumi.String("eksRole")}}
	if got := transform(context.Background(), role); got == nil || got.Props["permissionsBoundary"] != pulumi.String("arn:aws:iam::1:policy/b") {
		t.Errorf("a role: %+v", got)
	}
	if got := transform(context.Background(), &pulumi.ResourceTransformArgs{Type: "aws:ec2/securityGroup:SecurityGroup", Props: pulumi.Map{}}); got != nil {
		t.Errorf("a security group was changed: %+v", got)
	}
}
