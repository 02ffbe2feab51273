package policies

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func loadPack(t *testing.T) *Pack {
	t.Helper()
	p, err := Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// goodStack is the passing fixture of every rule: a compliant prod stack, one resource of each
// kind the platform declares (taken from the offline plan).
func goodStack(t testing.TB) []Resource {
	t.Helper()
	data, err := os.ReadFile("testdata/prod.json")
	if err != nil {
		t.Fatal(err)
	}
	rs, format, err := Read(data)
	if err != nil || format != FormatPlan {
		t.Fatalf("read fixture: %v (%s)", err, format)
	}
	return rs
}

// change is a failing fixture: an edit of the good stack.
type change func(t *testing.T, rs []Resource) []Resource

// set puts value at a dotted path ("spec.template.spec.containers.0.image") in the first
// resource of typ (and name, when given); a nil value deletes the key.
func set(typ, name, path string, value any) change {
	return func(t *testing.T, rs []Resource) []Resource {
		r := find(t, rs, typ, name)
		var cur any = r.Properties
		keys := strings.Split(path, ".")
		for i, k := range keys {
			last := i == len(keys)-1
			switch node := cur.(type) {
			case map[string]any:
				if last {
					if value == nil {
						delete(node, k)
					} else {
						node[k] = value
					}
					return rs
				}
				if _, ok := node[k]; !ok {
					node[k] = map[string]any{}
				}
				cur = node[k]
			case []any:
				n, err := strconv.Atoi(k)
				if err != nil || n >= len(node) {
					t.Fatalf("path %s: no element %s", path, k)
				}
				if last {
					node[n] = value
					return rs
				}
				cur = node[n]
			default:
				t.Fatalf("path %s: %s is not an object or list", path, k)
			}
		}
		return rs
	}
}

// drop removes every resource of typ (and name, when given).
func drop(typ, name string) change {
	return func(t *testing.T, rs []Resource) []Resource {
		var out []Resource
		for _, r := range rs {
			if r.Type == typ && (name == "" || r.Name == name) {
				continue
			}
			out = append(out, r)
		}
		if len(out) == len(rs) {
			t.Fatalf("drop: no %s %s in the fixture", typ, name)
		}
		return out
	}
}

// inDev moves the first resource of typ to a dev stack (URN and environment tag).
func inDev(typ string) change {
	return func(t *testing.T, rs []Resource) []Resource {
		r := find(t, rs, typ, "")
		r.URN = strings.Replace(r.URN, "urn:pulumi:prod::", "urn:pulumi:dev::", 1)
		if tags, ok := r.Properties["tags"].(map[string]any); ok {
			tags["environment"] = "dev"
		}
		return rs
	}
}

func add(r Resource) change {
	return func(t *testing.T, rs []Resource) []Resource { return append(rs, r) }
}

func find(t *testing.T, rs []Resource, typ, name string) *Resource {
	t.Helper()
	for i := range rs {
		if rs[i].Type == typ && (name == "" || rs[i].Name == name) {
			return &rs[i]
		}
	}
	t.Fatalf("no %s %s in the fixture", typ, name)
	return nil
}

const (
	eks        = "eks:index:Cluster"
	eksAWS     = "aws:eks/cluster:Cluster"
	lt         = "aws:ec2/launchTemplate:LaunchTemplate"
	rds        = "aws:rds/instance:Instance"
	cacheGroup = "aws:elasticache/replicationGroup:ReplicationGroup"
	ecr        = "aws:ecr/repository:Repository"
	sg         = "aws:ec2/securityGroup:SecurityGroup"
	sgr        = "aws:ec2/securityGroupRule:SecurityGroupRule"
	stage      = "aws:apigateway/stage:Stage"
	settings   = "aws:apigateway/methodSettings:MethodSettings"
	nlb        = "aws:lb/loadBalancer:LoadBalancer"
	deploy     = "kubernetes:apps/v1:Deployment"
	pa         = "kubernetes:security.istio.io/v1:PeerAuthentication"
	ap         = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
	ctr        = "spec.template.spec.containers.0."
)

// cases lists, per rule id, the edit of the good stack that must make exactly these rules
// fire (the id's own rule, unless want says otherwise).
var cases = []struct {
	id     string
	change change
	want   []string // rule ids expected; default: just id
}{
	{"SHOP-EKS-001", set(eks, "", "enabledClusterLogTypes", []any{"api"}), nil},
	{"SHOP-EKS-001", set(eksAWS, "", "enabledClusterLogTypes", nil), nil},
	{"SHOP-EKS-002", set(eks, "", "endpointPublicAccess", nil), []string{"SHOP-EKS-002", "SHOP-EKS-003"}},
	{"SHOP-EKS-002", set(eksAWS, "", "vpcConfig.endpointPublicAccess", true), []string{"SHOP-EKS-002", "SHOP-EKS-003"}},
	{"SHOP-EKS-003", func(t *testing.T, rs []Resource) []Resource {
		rs = inDev(eks)(t, rs)
		rs = set(eks, "", "endpointPublicAccess", true)(t, rs)
		return set(eks, "", "publicAccessCidrs", []any{"0.0.0.0/0"})(t, rs)
	}, nil},
	{"SHOP-EKS-004", set(eks, "", "endpointPrivateAccess", false), nil},
	{"SHOP-EKS-005", set(eks, "", "encryptionConfigKeyArn", nil), nil},
	{"SHOP-EKS-005", set(eksAWS, "", "encryptionConfig.resources", []any{}), nil},
	{"SHOP-EKS-006", func(t *testing.T, rs []Resource) []Resource {
		rs = drop("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "")(t, rs)
		return set(eks, "", "createOidcProvider", false)(t, rs)
	}, nil},
	{"SHOP-NODE-001", set("eks:index:ManagedNodeGroup", "", "subnetIds", []any{"network-private-0-id", "network-public-0-id"}), nil},
	{"SHOP-NODE-001", func(t *testing.T, rs []Resource) []Resource {
		// A real preview: subnet ids unknown, the dependency recorded by URN.
		ng := find(t, rs, "eks:index:ManagedNodeGroup", "")
		pub := find(t, rs, "aws:ec2/subnet:Subnet", "network-public-0")
		ng.Properties["subnetIds"] = []any{"04da6b54-80e4-46f7-96ec-b56ff0331ba9"}
		ng.PropertyDependencies = map[string][]string{"subnetIds": {pub.URN}}
		return rs
	}, nil},
	{"SHOP-NODE-001", set("aws:ec2/subnet:Subnet", "network-private-0", "mapPublicIpOnLaunch", true), nil},
	{"SHOP-NODE-002", set(lt, "", "metadataOptions.httpTokens", "optional"), nil},
	{"SHOP-NODE-003", set(lt, "", "metadataOptions.httpPutResponseHopLimit", 2), nil},
	{"SHOP-NODE-004", set(lt, "", "networkInterfaces", []any{map[string]any{"associatePublicIpAddress": "true"}}), nil},
	{"SHOP-NODE-004", set(eks, "", "nodeAssociatePublicIpAddress", true), nil},
	{"SHOP-NODE-005", set(lt, "", "blockDeviceMappings.0.ebs.encrypted", "false"), nil},
	{"SHOP-ECR-001", set(ecr, "", "imageScanningConfiguration.scanOnPush", false), nil},
	{"SHOP-ECR-002", set(ecr, "", "imageTagMutability", "MUTABLE"), nil},
	{"SHOP-ECR-003", set(ecr, "", "encryptionConfigurations", nil), nil},
	{"SHOP-ECR-004", drop("aws:ecr/lifecyclePolicy:LifecyclePolicy", ""), nil},
	{"SHOP-CW-001", set("aws:cloudwatch/metricAlarm:MetricAlarm", "", "alarmActions", []any{}), nil},
	{"SHOP-CW-001", set("aws:cloudwatch/metricAlarm:MetricAlarm", "", "actionsEnabled", false), nil},
	{"SHOP-LOG-001", set("aws:cloudwatch/logGroup:LogGroup", "", "retentionInDays", nil), nil},
	{"SHOP-LOG-002", set("aws:cloudwatch/logGroup:LogGroup", "", "kmsKeyId", nil), nil},
	{"SHOP-CACHE-001", set(cacheGroup, "", "transitEncryptionEnabled", false), nil},
	{"SHOP-CACHE-001", set(cacheGroup, "", "transitEncryptionMode", "preferred"), nil},
	{"SHOP-CACHE-002", set(cacheGroup, "", "atRestEncryptionEnabled", nil), nil},
	{"SHOP-CACHE-003", set(cacheGroup, "", "userGroupIds", []any{}), nil},
	{"SHOP-CACHE-003", set(cacheGroup, "", "authToken", "a-shared-token-1234"), nil},
	{"SHOP-CACHE-004", set("aws:elasticache/user:User", "", "authenticationMode.type", "password"), nil},
	{"SHOP-CACHE-004", set("aws:elasticache/user:User", "", "passwords", []any{"a-password-in-state"}), nil},
	{"SHOP-CACHE-005", set(cacheGroup, "", "numCacheClusters", 1), nil},
	{"SHOP-RDS-001", set(rds, "", "storageEncrypted", false), nil},
	{"SHOP-RDS-002", set(rds, "", "publiclyAccessible", true), nil},
	{"SHOP-RDS-003", set(rds, "", "backupRetentionPeriod", 3), nil},
	{"SHOP-RDS-004", set(rds, "", "multiAz", false), nil},
	{"SHOP-RDS-005", set(rds, "", "deletionProtection", nil), nil},
	{"SHOP-RDS-006", set(rds, "", "manageMasterUserPassword", nil), nil},
	{"SHOP-RDS-006", set(rds, "", "password", "hunter22"), nil},
	{"SHOP-SG-001", set(sg, "", "ingress.0.cidrBlocks", []any{"0.0.0.0/0"}), nil},
	{"SHOP-SG-001", func(t *testing.T, rs []Resource) []Resource {
		rs = set(sgr, "", "cidrBlocks", []any{"::/0"})(t, rs)
		rs = set(sgr, "", "fromPort", 22)(t, rs)
		return set(sgr, "", "toPort", 22)(t, rs)
	}, nil},
	{"SHOP-SG-002", set(sgr, "", "protocol", "-1"), nil},
	{"SHOP-APIGW-001", set(stage, "", "accessLogSettings", nil), nil},
	{"SHOP-APIGW-002", set(stage, "", "xrayTracingEnabled", false), nil},
	{"SHOP-APIGW-003", set(settings, "edge-orders-POST", "settings.throttlingBurstLimit", nil), nil},
	{"SHOP-APIGW-004", drop(settings, "edge-all-all"), nil},
	{"SHOP-APIGW-005", drop("aws:wafv2/webAclAssociation:WebAclAssociation", ""), nil},
	{"SHOP-NLB-001", set(nlb, "", "internal", false), nil},
	{"SHOP-NLB-002", set(nlb, "", "enableDeletionProtection", false), nil},
	{"SHOP-NLB-003", set(nlb, "", "securityGroups", nil), nil},
	{"SHOP-NLB-003", set(nlb, "", "securityGroups", []any{}), nil},
	{"SHOP-KMS-001", set("aws:kms/key:Key", "", "enableKeyRotation", false), nil},
	{"SHOP-TAG-001", set(rds, "", "tags.project", nil), nil},
	{"SHOP-TAG-002", set(nlb, "", "tags.environment", "staging"), nil},
	{"SHOP-K8S-001", set(deploy, "", ctr+"resources.limits", nil), nil},
	{"SHOP-K8S-002", set(deploy, "", ctr+"readinessProbe", nil), nil},
	{"SHOP-K8S-003", func(t *testing.T, rs []Resource) []Resource {
		rs = set(deploy, "", "spec.template.spec.securityContext.runAsNonRoot", false)(t, rs)
		return set(deploy, "", ctr+"securityContext.runAsNonRoot", nil)(t, rs)
	}, nil},
	{"SHOP-K8S-003", set(deploy, "", ctr+"securityContext.runAsUser", 0), nil},
	{"SHOP-K8S-004", set(deploy, "", ctr+"securityContext.readOnlyRootFilesystem", false), nil},
	{"SHOP-K8S-005", set(deploy, "", ctr+"securityContext.allowPrivilegeEscalation", nil), nil},
	{"SHOP-K8S-005", set(deploy, "", ctr+"securityContext.privileged", true), nil},
	{"SHOP-K8S-006", set(deploy, "", ctr+"image", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shopmesh/gateway:latest"), nil},
	{"SHOP-K8S-006", set(deploy, "", ctr+"image", "localhost:5000/gateway"), nil},
	{"SHOP-K8S-007", set("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "", "spec.minReplicas", 1), nil},
	{"SHOP-K8S-007", func(t *testing.T, rs []Resource) []Resource {
		return drop("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "")(t, rs)
	}, []string{"SHOP-K8S-007"}},
	{"SHOP-K8S-010", set(deploy, "", "spec.replicas", 3), nil},
	{"SHOP-K8S-011", add(secret("database", map[string]any{"stringData": map[string]any{
		"DATABASE_URL": "postgres://shopmesh:hunter2@db.example:5432/shopmesh?sslmode=require"}})), nil},
	{"SHOP-K8S-011", add(secret("database", map[string]any{"data": map[string]any{"DB_PASSWORD": "aHVudGVyMg=="}})), nil},
	{"SHOP-IAM-001", func(t *testing.T, rs []Resource) []Resource {
		rs = add(githubRole("deploy"))(t, rs)
		return add(Resource{URN: "urn:pulumi:prod::shopmesh::aws:iam/rolePolicyAttachment:RolePolicyAttachment::deploy", Type: "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
			Name: "deploy", Properties: map[string]any{"role": "shopmesh-prod-deploy", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}})(t, rs)
	}, nil},
	{"SHOP-IAM-001", func(t *testing.T, rs []Resource) []Resource {
		rs = add(githubRole("deploy"))(t, rs)
		return add(Resource{URN: "urn:pulumi:prod::shopmesh::aws:iam/rolePolicy:RolePolicy::deploy", Type: "aws:iam/rolePolicy:RolePolicy",
			Name: "deploy", Properties: map[string]any{"role": "deploy-id", "policy": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:*","*"],"Resource":"*"}]}`}})(t, rs)
	}, []string{"SHOP-IAM-001", "SHOP-IAM-003"}},
	{"SHOP-IAM-003", roleMay("deploy", "iam:CreateRole", "*"), nil},
	{"SHOP-IAM-003", roleMay("deploy", "iam:Put*", "arn:aws:iam::123456789012:role/shopmesh-prod-*"), nil},
	{"SHOP-IAM-002", previewMay("ssm:Get*", "*"), nil},
	{"SHOP-IAM-002", previewMay("ssm:GetParameter", "arn:aws:ssm:eu-west-1:123456789012:parameter/shopmesh/prod/*"), nil},
	{"SHOP-IAM-002", previewMay("logs:GetLogEvents", "*"), nil},
	{"SHOP-IAM-002", previewMay("ecr:*", "*"), nil},
	{"SHOP-IAM-002", previewMay("secretsmanager:GetSecretValue", "*"), nil},
	{"SHOP-K8S-008", drop("kubernetes:policy/v1:PodDisruptionBudget", ""), nil},
	{"SHOP-K8S-009", drop("kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny"), nil},
	{"SHOP-ISTIO-001", drop(pa, "PeerAuthentication-default"), nil},
	{"SHOP-ISTIO-002", drop(ap, ""), nil},
	{"SHOP-ISTIO-003", set(pa, "PeerAuthentication-default", "spec.mtls.mode", "PERMISSIVE"), []string{"SHOP-ISTIO-001", "SHOP-ISTIO-003"}},
	{"SHOP-ISTIO-004", func(t *testing.T, rs []Resource) []Resource {
		return set(pa, "PeerAuthentication-default", "spec.portLevelMtls", map[string]any{"9090": map[string]any{"mode": "DISABLE"}})(t, rs)
	}, nil},
	{"SHOP-ISTIO-005", add(Resource{URN: "urn:pulumi:prod::shopmesh::shopmesh:mesh:Mesh$" + ap + "::allow-all", Type: ap, Name: "allow-all",
		Properties: map[string]any{"metadata": map[string]any{"name": "allow-all", "namespace": "shop"}, "spec": map[string]any{"rules": []any{map[string]any{}}}}}), nil},
}

func secret(name string, body map[string]any) Resource {
	props := map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": name, "namespace": "shop"}}
	for k, v := range body {
		props[k] = v
	}
	return Resource{URN: "urn:pulumi:prod::shopmesh::kubernetes:core/v1:Secret::" + name, Type: "kubernetes:core/v1:Secret", Name: name, Properties: props}
}

// githubRole is a role that GitHub Actions of one repository and environment can assume.
// previewMay adds a statement allowing action on resource to the preview role's policy.
func previewMay(action, resource string) change { return roleMay("preview", action, resource) }

// roleMay adds a statement allowing action on resource to the policy of role (deploy, preview).
func roleMay(role, action, resource string) change {
	return func(t *testing.T, rs []Resource) []Resource {
		r := find(t, rs, "aws:iam/rolePolicy:RolePolicy", role)
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.Properties["policy"].(string)), &doc); err != nil {
			t.Fatal(err)
		}
		doc["Statement"] = append(doc["Statement"].([]any), map[string]any{"Effect": "Allow", "Action": []any{action}, "Resource": resource})
		b, _ := json.Marshal(doc)
		r.Properties["policy"] = string(b)
		return rs
	}
}

func githubRole(name string) Resource {
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRoleWithWebIdentity",` +
		`"Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},` +
		`"Condition":{"StringEquals":{"token.actions.githubusercontent.com:sub":"repo:shopmesh/shopmesh:environment:prod"}}}]}`
	return Resource{URN: "urn:pulumi:prod::shopmesh::aws:iam/role:Role::" + name, Type: "aws:iam/role:Role", Name: name,
		Properties: map[string]any{"name": "shopmesh-prod-" + name, "assumeRolePolicy": trust, "tags": map[string]any{"environment": "prod", "project": "shopmesh"}}}
}

// fired is the set of rule ids that v holds, leaving out the advisories the good stack has.
func fired(vs []Violation, baseline map[string]bool) []string {
	set := map[string]bool{}
	for _, v := range vs {
		if !baseline[v.Rule.ID+v.Message] {
			set[v.Rule.ID] = true
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func TestEveryRuleFiresOnItsFailingFixtureOnly(t *testing.T) {
	p := loadPack(t)
	ctx := context.Background()
	good, err := p.Check(ctx, goodStack(t))
	if err != nil {
		t.Fatal(err)
	}
	baseline := map[string]bool{}
	for _, v := range good {
		if v.Rule.Level == Mandatory {
			t.Errorf("the passing fixture violates %s (%s): %s", v.Rule.ID, v.Rule.Name, v.Message)
		}
		baseline[v.Rule.ID+v.Message] = true // the gateway's permissive port: advisory
	}
	covered := map[string]bool{}
	for i, c := range cases {
		covered[c.id] = true
		want := c.want
		if want == nil {
			want = []string{c.id}
		}
		t.Run(c.id+"#"+strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			vs, err := p.Check(ctx, c.change(t, goodStack(t)))
			if err != nil {
				t.Fatal(err)
			}
			if got := fired(vs, baseline); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("fired %v, want %v", got, want)
				for _, v := range vs {
					t.Logf("  %s %s", v.Rule.ID, v.Message)
				}
			}
		})
	}
	for _, r := range p.Rules {
		if !covered[r.ID] {
			t.Errorf("rule %s (%s) has no failing fixture", r.ID, r.Name)
		}
	}
}

func TestRulesHaveUniqueIDsAndMetadata(t *testing.T) {
	p := loadPack(t)
	if p.Name != "shopmesh" {
		t.Errorf("package %q, want shopmesh", p.Name)
	}
	if len(p.Rules) < 30 {
		t.Errorf("%d rules, want at least 30", len(p.Rules))
	}
	ids := map[string]string{}
	for _, r := range p.Rules {
		if r.ID == "" || r.Title == "" || r.Description == "" || r.Severity == "" || r.Remediation == "" {
			t.Errorf("%s (%s): incomplete METADATA: %+v", r.Name, r.File, r)
		}
		if prev, ok := ids[r.ID]; ok {
			t.Errorf("id %s used by %s and %s", r.ID, prev, r.Name)
		}
		ids[r.ID] = r.Name
		switch r.Severity {
		case "critical", "high", "medium", "low", "info":
		default:
			t.Errorf("%s: severity %q", r.ID, r.Severity)
		}
		if (r.Level == Advisory) != strings.Contains(r.Name, "warn_") {
			t.Errorf("%s: level %s does not follow its name", r.Name, r.Level)
		}
	}
}

// TestPackLoadsAsRegoV0AndV1: the analyzer parses the files as Rego v0 with import rego.v1;
// the same files must also be valid Rego v1.
func TestPackLoadsAsRegoV0AndV1(t *testing.T) {
	v0, err := load(context.Background(), files, ast.RegoV0)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := load(context.Background(), files, ast.RegoV1)
	if err != nil {
		t.Fatal(err)
	}
	if len(v0.Rules) != len(v1.Rules) {
		t.Errorf("v0 has %d rules, v1 %d", len(v0.Rules), len(v1.Rules))
	}
	entries, _ := os.ReadDir(".")
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".rego" {
			continue
		}
		b, _ := os.ReadFile(e.Name())
		if !strings.Contains(string(b), "import rego.v1") || !strings.HasPrefix(strings.TrimSpace(string(b)), "#") {
			t.Errorf("%s: must start with a comment saying its concern and import rego.v1", e.Name())
		}
	}
}

func TestInputShapeMatchesTheAnalyzer(t *testing.T) {
	in := Input(Resource{URN: "urn:pulumi:dev::shopmesh::aws:rds/instance:Instance::db", Type: "aws:rds/instance:Instance", Name: "db",
		Provider:   "urn:pulumi:dev::shopmesh::pulumi:providers:aws::default::id-1",
		Properties: map[string]any{"engine": "postgres", "type": "clash"}})
	for _, key := range []string{"__type", "__name", "__urn", "__options", "__provider", "__properties", "engine", "options", "provider", "properties"} {
		if _, ok := in[key]; !ok {
			t.Errorf("input lacks %s", key)
		}
	}
	if in["type"] != "clash" || in["__type"] != "aws:rds/instance:Instance" {
		t.Errorf("a property named type must win at the top level, __type keeps the metadata: %v %v", in["type"], in["__type"])
	}
	if prov := in["__provider"].(map[string]any); prov["name"] != "default" || prov["type"] != "pulumi:providers:aws" {
		t.Errorf("provider = %v", prov)
	}
}

func TestReadFormats(t *testing.T) {
	preview := `{"steps": [
	  {"op": "create", "urn": "urn:pulumi:prod::shopmesh::aws:kms/key:Key::k", "newState": {"urn": "urn:pulumi:prod::shopmesh::aws:kms/key:Key::k", "type": "aws:kms/key:Key", "inputs": {"enableKeyRotation": false, "tags": {"project": "shopmesh", "environment": "prod"}}}},
	  {"op": "same", "urn": "urn:pulumi:prod::shopmesh::pulumi:pulumi:Stack::shopmesh-prod", "newState": {"type": "pulumi:pulumi:Stack", "urn": "urn:pulumi:prod::shopmesh::pulumi:pulumi:Stack::shopmesh-prod"}},
	  {"op": "delete", "urn": "urn:pulumi:prod::shopmesh::aws:kms/key:Key::old", "oldState": {}}
	]}`
	export := `{"version": 3, "deployment": {"resources": [
	  {"urn": "urn:pulumi:prod::shopmesh::pulumi:pulumi:Stack::shopmesh-prod", "type": "pulumi:pulumi:Stack"},
	  {"urn": "urn:pulumi:prod::shopmesh::aws:kms/key:Key::k", "type": "aws:kms/key:Key", "inputs": {"enableKeyRotation": false, "tags": {"project": "shopmesh", "environment": "prod"}}, "dependencies": ["urn:x"]}
	]}}`
	for _, tc := range []struct{ json, format string }{{preview, FormatPreview}, {export, FormatExport}} {
		rs, format, err := Read([]byte(tc.json))
		if err != nil || format != tc.format || len(rs) != 1 || rs[0].Name != "k" || rs[0].Properties["enableKeyRotation"] != false {
			t.Errorf("%s: %v %s %+v", tc.format, err, format, rs)
		}
		vs, err := loadPack(t).Check(context.Background(), rs)
		if err != nil || len(vs) != 1 || vs[0].Rule.ID != "SHOP-KMS-001" {
			t.Errorf("%s: violations %+v, %v; want SHOP-KMS-001", tc.format, vs, err)
		}
	}
	for _, bad := range []string{"", "{}", "nonsense", `{"steps": 3}`} {
		if _, _, err := Read([]byte(bad)); err == nil {
			t.Errorf("Read(%q) accepted it", bad)
		}
	}
}

// TestFixtureIsAPlan keeps testdata/prod.json readable by the CLI as an offline plan.
func TestFixtureIsAPlan(t *testing.T) {
	data, _ := os.ReadFile("testdata/prod.json")
	var plan []map[string]any
	if err := json.Unmarshal(data, &plan); err != nil || len(plan) == 0 {
		t.Fatalf("testdata/prod.json: %v", err)
	}
}
