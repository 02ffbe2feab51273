package platform

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// projectCopy copies Pulumi.yaml and the stack files into a temporary folder, with edit applied
// to the named file, so that a test can break one thing at a time.
func projectCopy(t *testing.T, file string, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"} {
		b, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if f == file {
			edited := edit(text)
			if edited == text {
				t.Fatalf("the edit changed nothing in %s", f)
			}
			text = edited
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestStackConfigLoadsLikeTheCLI: Pulumi.yaml and the stack files go through the SDK's loaders,
// so every file the CLI would refuse is refused, naming the key.
func TestStackConfigLoadsLikeTheCLI(t *testing.T) {
	_, cfg, err := StackConfig("../..", "dev", map[string]string{"imageTag": "abc", "clusterAdminArns": `["arn:aws:iam::123456789012:role/Admin"]`})
	if err != nil {
		t.Fatal(err)
	}
	// A default from Pulumi.yaml, a value from the stack file, and the overrides.
	for key, want := range map[string]string{
		"shopmesh:apiThrottleRate": "200", "shopmesh:azCount": "2", "aws:region": "eu-west-1", "shopmesh:imageTag": "abc",
		"shopmesh:clusterAdminArns": `["arn:aws:iam::123456789012:role/Admin"]`, "shopmesh:publicAccessCidrs": "[]",
	} {
		if cfg[key] != want {
			t.Errorf("%s = %q, want %q", key, cfg[key], want)
		}
	}

	broken := []struct {
		name, file string
		edit       func(string) string
		overrides  map[string]string
		want       string
	}{
		{"a type Pulumi's schema does not have", "Pulumi.yaml", func(s string) string {
			return strings.Replace(s, "apiThrottleRate:\n    type: integer", "apiThrottleRate:\n    type: number", 1)
		}, nil, "#/config/apiThrottleRate"},
		{"a default of the wrong type", "Pulumi.yaml", func(s string) string {
			return strings.Replace(s, "default: 8443", "default: eighty", 1)
		}, nil, "apiTunnelPort"},
		{"a stack value of the wrong type", "Pulumi.dev.yaml", func(s string) string {
			return strings.Replace(s, "shopmesh:azCount: 2", "shopmesh:azCount: two", 1)
		}, nil, "'azCount' must be of type 'integer'"},
		{"a list where the project declares a string", "Pulumi.prod.yaml", func(s string) string {
			return strings.Replace(s, "shopmesh:dbInstanceClass: db.r6g.large", "shopmesh:dbInstanceClass: [db.r6g.large]", 1)
		}, nil, "'dbInstanceClass' must be of type 'string'"},
		{"a misspelt key", "Pulumi.dev.yaml", func(s string) string {
			return strings.Replace(s, "shopmesh:azCount: 2", "shopmesh:azcount: 2", 1)
		}, nil, "azcount, which Pulumi.yaml does not declare"},
		{"a required key no stack sets", "Pulumi.yaml", func(s string) string {
			return strings.Replace(s, "  environment:\n    type: string\n", "  environment:\n    type: string\n  owner:\n    type: string\n", 1)
		}, nil, "missing configuration values owner"},
		{"an override of the wrong type", "", nil, map[string]string{"nodeMaxSize": "many"}, "'nodeMaxSize' must be of type 'integer'"},
	}
	for _, tt := range broken {
		t.Run(tt.name, func(t *testing.T) {
			dir := "../.."
			if tt.file != "" {
				dir = projectCopy(t, tt.file, tt.edit)
			}
			_, _, err := StackConfig(dir, "dev", tt.overrides)
			if tt.file == "Pulumi.prod.yaml" {
				_, _, err = StackConfig(dir, "prod", tt.overrides)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("StackConfig = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestFirstStageStandsAlone: the first stage of a first deploy (workloads: false) creates the
// infrastructure and registries; it must need nothing from the later stages, touch nothing that
// needs the Kubernetes API or an image, and be exactly what the full stack declares, so that the
// second stage only adds to it.
func TestFirstStageStandsAlone(t *testing.T) {
	for _, stack := range []string{"dev", "prod"} {
		t.Run(stack, func(t *testing.T) {
			stage, err := PlanStack("../..", stack, map[string]string{"workloads": "false"}, Program)
			if err != nil {
				t.Fatal(err)
			}
			full := planFor(t, stack)
			if problems := stageProblems(stage, full); len(problems) > 0 {
				t.Errorf("first stage of %s:\n  %s", stack, strings.Join(problems, "\n  "))
			}
			if len(stage.ByType("aws:ecr/repository:Repository")) != len(Services) || len(stage.ByType("eks:index:Cluster")) != 1 {
				t.Errorf("the first stage must create the registries and the cluster")
			}
			if len(stage.Resources) >= len(full.Resources) {
				t.Errorf("the first stage holds %d resources, the full stack %d: nothing is held back", len(stage.Resources), len(full.Resources))
			}
		})
	}
}

// TestStageProblemsCatchesBrokenStages: each deliberate edit of a good first stage is reported.
func TestStageProblemsCatchesBrokenStages(t *testing.T) {
	full := planFor(t, "dev")
	good, err := PlanStack("../..", "dev", map[string]string{"workloads": "false"}, Program)
	if err != nil {
		t.Fatal(err)
	}
	deployment := named(t, full, "kubernetes:apps/v1:Deployment", "gateway")
	edits := []struct {
		name string
		edit func(p *Plan)
		want string
	}{
		{"waits for a workload", func(p *Plan) {
			i := index(p, "aws:lb/loadBalancer:LoadBalancer")
			p.Resources[i].Dependencies = append(p.Resources[i].Dependencies, deployment.URN)
		}, "depends on " + deployment.URN},
		{"reads a workload's output", func(p *Plan) {
			i := index(p, "aws:rds/instance:Instance")
			p.Resources[i].PropertyDependencies = map[string][]string{"tags": {deployment.URN}}
		}, "depends on " + deployment.URN},
		{"needs the Kubernetes API", func(p *Plan) { p.Resources = append(p.Resources, deployment) }, "needs the Kubernetes API"},
		{"looks up an image", func(p *Plan) {
			p.Invokes = append(p.Invokes, Invoke{Token: "aws:ecr/getImage:getImage", Args: map[string]any{"imageTag": "x"}})
		}, "aws:ecr/getImage"},
		{"differs from the full stack", func(p *Plan) {
			i := index(p, "aws:rds/instance:Instance")
			p.Resources[i].Inputs = map[string]any{"instanceClass": "db.t4g.nano"}
		}, "the full stack declares it with other inputs"},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			p := clonePlan(t, good)
			e.edit(p)
			problems := stageProblems(p, full)
			if !strings.Contains(strings.Join(problems, "\n"), e.want) {
				t.Errorf("problems = %q, want one mentioning %q", problems, e.want)
			}
		})
	}
}

// stageProblems lists what keeps stage from deploying on its own before the rest of full.
func stageProblems(stage, full *Plan) []string {
	var problems []string
	in := map[string]bool{}
	for _, r := range stage.Resources {
		in[r.URN] = true
	}
	fullByURN := map[string]Resource{}
	for _, r := range full.Resources {
		fullByURN[r.URN] = r
	}
	for _, r := range stage.Resources {
		deps := append([]string{r.Parent}, r.Dependencies...)
		for _, urns := range r.PropertyDependencies {
			deps = append(deps, urns...)
		}
		if i := strings.LastIndex(r.Provider, "::"); i > 0 { // "<urn>::<id>"
			deps = append(deps, r.Provider[:i])
		}
		for _, d := range deps {
			if d != "" && !in[d] && !strings.Contains(d, "::pulumi:pulumi:Stack::") {
				problems = append(problems, fmt.Sprintf("%s depends on %s, which the stage does not create", r.URN, d))
			}
		}
		if strings.HasPrefix(r.Type, "kubernetes:") || strings.Contains(r.Provider, "pulumi:providers:kubernetes") {
			problems = append(problems, fmt.Sprintf("%s needs the Kubernetes API, which nothing can reach before the cluster and its access exist", r.URN))
		}
		if f, ok := fullByURN[r.URN]; !ok {
			problems = append(problems, fmt.Sprintf("%s is not in the full stack: the second stage would delete it", r.URN))
		} else if !reflect.DeepEqual(f.Inputs, r.Inputs) {
			problems = append(problems, fmt.Sprintf("%s: the full stack declares it with other inputs, so the second stage would change it", r.URN))
		}
	}
	for _, call := range stage.Invokes {
		if call.Token == "aws:ecr/getImage:getImage" {
			problems = append(problems, fmt.Sprintf("the stage looks up an image (%s %v) before any image is pushed", call.Token, call.Args))
		}
	}
	return problems
}

// TestNoAccountWideNameClash: dev and prod in one AWS account must not claim the same physical
// name of an account- or region-unique resource; either would fail to create.
func TestNoAccountWideNameClash(t *testing.T) {
	dev, prod, account := planFor(t, "dev"), planFor(t, "prod"), accountPlan(t)
	if clashes := nameClashes(dev, prod); len(clashes) > 0 {
		t.Errorf("dev and prod clash:\n  %s", strings.Join(clashes, "\n  "))
	}
	for _, env := range []*Plan{dev, prod} {
		if clashes := nameClashes(account, env); len(clashes) > 0 {
			t.Errorf("the account stack and %s clash:\n  %s", env.Stack, strings.Join(clashes, "\n  "))
		}
	}
	claimed := 0
	for _, p := range []*Plan{dev, prod} {
		for _, r := range p.Resources {
			if _, ok := physicalName(r); ok {
				claimed++
			}
		}
	}
	if claimed < 20 {
		t.Errorf("only %d named resources found across both stacks: the name table no longer matches the program", claimed)
	}

	edits := []struct {
		name string
		edit func(p *Plan)
		want string
	}{
		{"a repository without the stack in its name", func(p *Plan) {
			i := index(p, "aws:ecr/repository:Repository")
			p.Resources[i].Inputs = map[string]any{"name": strings.Replace(p.Resources[i].Inputs["name"].(string), "/prod/", "/dev/", 1)}
		}, "aws:ecr/repository:Repository shopmesh/dev/"},
		{"an environment creates the GitHub OIDC provider", func(p *Plan) {
			p.Resources = append(p.Resources, named(t, account, "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "github"))
		}, "https://" + GithubOIDCIssuer},
		{"an environment sets API Gateway's CloudWatch role", func(p *Plan) {
			p.Resources = append(p.Resources, named(t, account, "aws:apigateway/account:Account", "apigateway"))
		}, "the account's CloudWatch role setting"},
		{"one database identifier", func(p *Plan) {
			i := index(p, "aws:rds/instance:Instance")
			p.Resources[i].Inputs = map[string]any{"identifier": "shopmesh-dev-postgres"}
		}, "shopmesh-dev-postgres"},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			p := clonePlan(t, prod)
			e.edit(p)
			other := dev
			if strings.HasPrefix(e.name, "an environment") {
				other = account
			}
			if clashes := nameClashes(other, p); !strings.Contains(strings.Join(clashes, "\n"), e.want) {
				t.Errorf("clashes = %q, want one naming %q", clashes, e.want)
			}
		})
	}
}

// accountUnique lists, per resource type, the input AWS requires to be unique in an account (IAM
// is global; the rest per region, and both stacks use one region), and what it is called.
var accountUnique = map[string]string{
	"aws:ecr/repository:Repository":                       "name",
	"aws:iam/role:Role":                                   "name",
	"aws:iam/policy:Policy":                               "name",
	"aws:iam/instanceProfile:InstanceProfile":             "name",
	"aws:iam/openIdConnectProvider:OpenIdConnectProvider": "url", // one provider per URL per account
	"aws:kms/alias:Alias":                                 "name",
	"aws:cloudwatch/logGroup:LogGroup":                    "name",
	"aws:wafv2/webAcl:WebAcl":                             "name",
	"aws:rds/instance:Instance":                           "identifier",
	"aws:rds/subnetGroup:SubnetGroup":                     "name",
	"aws:secretsmanager/secret:Secret":                    "name",
	"aws:lb/loadBalancer:LoadBalancer":                    "name",
	"aws:lb/targetGroup:TargetGroup":                      "name",
	"eks:index:Cluster":                                   "name",
	"aws:eks/cluster:Cluster":                             "name",
	// aws:apigateway/account:Account is one setting per account and region: the account stack's.
	"aws:apigateway/account:Account":                          "",
	"aws:apigateway/usagePlan:UsagePlan":                      "",
	"aws:sns/topic:Topic":                                     "name",
	"aws:cloudwatch/dashboard:Dashboard":                      "dashboardName",
	"aws:elasticache/replicationGroup:ReplicationGroup":       "replicationGroupId",
	"aws:cloudwatch/metricAlarm:MetricAlarm":                  "name",
	"aws:ec2/securityGroup:SecurityGroup":                     "", // names are unique per VPC, and each stack has its own
	"aws:iam/rolePolicyAttachment:RolePolicyAttachment":       "",
	"aws:eks/accessEntry:AccessEntry":                         "", // per cluster
	"aws:eks/accessPolicyAssociation:AccessPolicyAssociation": "",
}

// physicalName is the account-unique name r claims; autonamed resources (no name input) get a
// random suffix from Pulumi and claim none.
func physicalName(r Resource) (string, bool) {
	field, listed := accountUnique[r.Type]
	if !listed {
		return "", false
	}
	if field == "" {
		if r.Type == "aws:apigateway/account:Account" {
			return "the account's CloudWatch role setting", true
		}
		return "", false
	}
	name, _ := r.Inputs[field].(string)
	return name, name != ""
}

// nameClashes lists the names that more than one resource across the plans claim.
func nameClashes(plans ...*Plan) []string {
	owners := map[string][]string{}
	for _, p := range plans {
		for _, r := range p.Resources {
			if name, ok := physicalName(r); ok {
				key := r.Type + " " + name
				owners[key] = append(owners[key], p.Stack+":"+r.Name)
			}
		}
	}
	var out []string
	for _, key := range sortedKeys(owners) {
		if len(owners[key]) > 1 {
			out = append(out, fmt.Sprintf("%s is claimed by %s", key, strings.Join(owners[key], ", ")))
		}
	}
	return out
}

// TestClusterAccess: whoever runs pulumi up can reach the API, and the principals named in
// config, plus the deploy role, are cluster admins through access entries.
func TestClusterAccess(t *testing.T) {
	admin := "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/PlatformAdmin"
	p, err := PlanStack("../..", "prod", map[string]string{"imageTag": testImageTag, "clusterAdminArns": `["` + admin + `"]`}, Program)
	if err != nil {
		t.Fatal(err)
	}
	principals := map[string]bool{}
	for _, e := range p.ByType("aws:eks/accessEntry:AccessEntry") {
		principals[fmt.Sprint(e.Inputs["principalArn"])] = true
		if e.Inputs["clusterName"] != "shopmesh-prod-eks" || e.Inputs["type"] != "STANDARD" {
			t.Errorf("access entry %s = %v", e.Name, e.Inputs)
		}
	}
	deploy, preview := "arn:aws:iam::"+fakeAccount+":role/shopmesh-prod-deploy", "arn:aws:iam::"+fakeAccount+":role/shopmesh-prod-preview"
	if !reflect.DeepEqual(principals, map[string]bool{admin: true, deploy: true, preview: true}) {
		t.Errorf("access entries for %v, want the deploy and preview roles and %s", principals, admin)
	}
	// Cluster admin for the deploy role and the named admins; the pull-request preview role only reads.
	want := map[string]string{admin: ClusterAdminPolicy, deploy: ClusterAdminPolicy, preview: ClusterViewPolicy}
	for _, a := range p.ByType("aws:eks/accessPolicyAssociation:AccessPolicyAssociation") {
		if principal := fmt.Sprint(a.Inputs["principalArn"]); a.Inputs["policyArn"] != want[principal] || at(a.Inputs, "accessScope.type") != "cluster" {
			t.Errorf("policy association %s = %v, want %s at cluster scope", a.Name, a.Inputs, want[principal])
		}
	}
	if n := len(p.ByType("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")); n != len(principals) {
		t.Errorf("%d policy associations for %d entries", n, len(principals))
	}

	// pulumi-eks applies no manifest of its own: the CNI is an EKS add-on.
	cluster := one(t, p, "eks:index:Cluster")
	if cluster.Inputs["useDefaultVpcCni"] != true || cluster.Inputs["authenticationMode"] != "API" {
		t.Errorf("cluster inputs: useDefaultVpcCni %v, authenticationMode %v", cluster.Inputs["useDefaultVpcCni"], cluster.Inputs["authenticationMode"])
	}
	// The CNI add-on runs the network policy agent, or NetworkPolicies are accepted and ignored.
	cni := named(t, p, "aws:eks/addon:Addon", "cluster-vpc-cni")
	var values map[string]any
	if err := json.Unmarshal([]byte(fmt.Sprint(cni.Inputs["configurationValues"])), &values); err != nil || cni.Inputs["addonName"] != "vpc-cni" || values["enableNetworkPolicy"] != "true" {
		t.Errorf("vpc-cni add-on %v (%v), want enableNetworkPolicy \"true\"", cni.Inputs, err)
	}
}

// TestStacksTunnelOnPortsOfTheirOwn: with one stack's tunnel open, another stack's pulumi up
// would reach the first stack's cluster through a shared local port.
func TestStacksTunnelOnPortsOfTheirOwn(t *testing.T) {
	seen := map[int]string{}
	for _, stack := range []string{"dev", "prod"} {
		port := stackConfig(t, stack).ApiTunnelPort
		if other, ok := seen[port]; ok {
			t.Errorf("%s and %s both tunnel on 127.0.0.1:%d: set apiTunnelPort apart in Pulumi.%s.yaml", other, stack, port, stack)
		}
		seen[port] = stack
	}
}

// TestApiTunnel: with kubeApiAccess tunnel the provider talks to 127.0.0.1 and checks the
// endpoint's real name; the tunnel instance has no way in but SSM; public access uses the
// endpoint directly and builds no tunnel.
func TestApiTunnel(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		kc := providerKubeconfig(t, p)
		cluster := at(kc, "clusters.0.cluster").(map[string]any)
		if cluster["server"] != fmt.Sprintf("https://127.0.0.1:%d", cfg.ApiTunnelPort) || cluster["tls-server-name"] != "0123456789ABCDEF0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com" ||
			cluster["certificate-authority-data"] == "" {
			t.Errorf("provider cluster = %v, want the tunnel's local end checked against the endpoint's name", cluster)
		}
		if args := asStrings(at(kc, "users.0.user.exec.args")); strings.Join(args, " ") != "--region eu-west-1 eks get-token --cluster-name shopmesh-"+p.Stack+"-eks --output json" {
			t.Errorf("token command args = %v", args)
		}
		instance := one(t, p, "aws:ec2/instance:Instance")
		if instance.Inputs["associatePublicIpAddress"] != false || at(instance.Inputs, "metadataOptions.httpTokens") != "required" ||
			!strings.Contains(fmt.Sprint(instance.Inputs["subnetId"]), "-private-") || at(instance.Inputs, "rootBlockDevice.encrypted") != true {
			t.Errorf("tunnel instance %v: want a private subnet, no public address, IMDSv2, an encrypted disk", instance.Inputs)
		}
		sg := named(t, p, "aws:ec2/securityGroup:SecurityGroup", "api-tunnel")
		if sg.Inputs["ingress"] != nil && len(sg.Inputs["ingress"].([]any)) > 0 {
			t.Errorf("tunnel security group admits %v; it needs no inbound rule", sg.Inputs["ingress"])
		}
		rule := named(t, p, "aws:ec2/securityGroupRule:SecurityGroupRule", "api-tunnel-to-api")
		if rule.Inputs["fromPort"] != float64(443) || rule.Inputs["sourceSecurityGroupId"] != "api-tunnel-id" {
			t.Errorf("cluster rule %v, want 443 from the tunnel's group", rule.Inputs)
		}
		attach := named(t, p, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "api-tunnel")
		if attach.Inputs["policyArn"] != "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" {
			t.Errorf("tunnel role policy %v, want SSM only", attach.Inputs["policyArn"])
		}
		// pulumi destroy deletes in reverse dependency order: the provider, and with it every
		// Kubernetes resource, must go before the tunnel it talks through.
		provider := one(t, p, "pulumi:providers:kubernetes")
		if !slices.Contains(provider.Dependencies, one(t, p, "aws:ec2/instance:Instance").URN) {
			t.Errorf("the Kubernetes provider does not depend on the API tunnel: %v", provider.Dependencies)
		}
		if p.Outputs["apiTunnelInstanceId"] != "api-tunnel-id" {
			t.Errorf("apiTunnelInstanceId output = %v", p.Outputs["apiTunnelInstanceId"])
		}
	})

	public, err := PlanStack("../..", "dev", map[string]string{"imageTag": testImageTag, "kubeApiAccess": "public",
		"endpointPublicAccess": "true", "publicAccessCidrs": `["198.18.7.10/32"]`}, Program)
	if err != nil {
		t.Fatal(err)
	}
	if server := at(providerKubeconfig(t, public), "clusters.0.cluster.server"); !strings.HasPrefix(fmt.Sprint(server), "https://shopmesh-dev-eks") {
		t.Errorf("public access: provider server %v, want the cluster endpoint", server)
	}
	if n := len(public.ByType("shopmesh:access:ApiTunnel")) + len(public.ByType("aws:ec2/instance:Instance")); n != 0 {
		t.Errorf("public access still builds the tunnel (%d resources)", n)
	}
	if got := one(t, public, "eks:index:Cluster").Inputs["publicAccessCidrs"]; !reflect.DeepEqual(got, []any{"198.18.7.10/32"}) {
		t.Errorf("public access CIDRs = %v", got)
	}
}

// providerKubeconfig is the kubeconfig the Kubernetes provider is given.
func providerKubeconfig(t *testing.T, p *Plan) map[string]any {
	t.Helper()
	var kc map[string]any
	if err := json.Unmarshal([]byte(fmt.Sprint(one(t, p, "pulumi:providers:kubernetes").Inputs["kubeconfig"])), &kc); err != nil {
		t.Fatalf("provider kubeconfig: %v", err)
	}
	return kc
}

// index is the position of the first resource of typ.
func index(p *Plan, typ string) int {
	for i, r := range p.Resources {
		if r.Type == typ {
			return i
		}
	}
	panic("no " + typ)
}

// clonePlan deep-copies a plan so that a test may edit it.
func clonePlan(t *testing.T, p *Plan) *Plan {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var out Plan
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}
