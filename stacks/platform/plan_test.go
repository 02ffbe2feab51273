package platform

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// testImageTag is the imageTag the tests deploy, as make deploy passes the pushed commit's tag.
const testImageTag = "3f2a9c1e"

// Both stacks are planned once per test binary; every test reads the recorded graph.
var (
	planOnce sync.Once
	plans    map[string]*Plan
	planErr  error
)

func planFor(t *testing.T, stack string) *Plan {
	t.Helper()
	planOnce.Do(func() {
		plans = map[string]*Plan{}
		for _, s := range []string{"dev", "prod"} {
			p, err := PlanStack("../..", s, map[string]string{"imageTag": testImageTag}, Program)
			if err != nil {
				planErr = fmt.Errorf("plan %s: %w", s, err)
				return
			}
			plans[s] = p
		}
	})
	if planErr != nil {
		t.Fatal(planErr)
	}
	return plans[stack]
}

// stackConfig is what the stack's YAML says, for computing expectations.
func stackConfig(t *testing.T, stack string) Config {
	t.Helper()
	_, raw, err := StackConfig("../..", stack, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) string { return raw["shopmesh:"+k] }
	atoi := func(k string) int {
		var n int
		if _, err := fmt.Sscan(get(k), &n); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	return Config{Project: "shopmesh", Stack: stack, Environment: get("environment"), AzCount: atoi("azCount"), NatPerAz: get("natPerAz") == "true",
		EndpointPublicAccess: get("endpointPublicAccess") == "true", Replicas: atoi("replicas"), Autoscaling: get("autoscaling") == "true",
		DbMultiAz: get("dbMultiAz") == "true", DbDeletionProtection: get("dbDeletionProtection") == "true",
		OrdersThrottleRate: atoi("ordersThrottleRate"), OrdersThrottleBurst: atoi("ordersThrottleBurst"), EcrKeepImages: atoi("ecrKeepImages"),
		EnableWaf: get("enableWaf") == "true", LogRetentionDays: atoi("logRetentionDays"), DbBackupRetentionDays: atoi("dbBackupRetentionDays"),
		Region: raw["aws:region"], ClusterVersion: get("clusterVersion"), ApiThrottleRate: atoi("apiThrottleRate"), ApiThrottleBurst: atoi("apiThrottleBurst"),
		LoginPerMinute: atoi("loginPerMinute"), LoginBurst: atoi("loginBurst"), SignupPerMinute: atoi("signupPerMinute"), SignupBurst: atoi("signupBurst"),
		Alarm5xxPercent: atoi("alarm5xxPercent"), AlarmLatencyP99Ms: atoi("alarmLatencyP99Ms"), AlarmDbCpuPercent: atoi("alarmDbCpuPercent"),
		AlarmDbFreeStoragePercent: atoi("alarmDbFreeStoragePercent"), AlarmPodRestarts: atoi("alarmPodRestarts"),
		TraceSamplePercent: atoi("traceSamplePercent"), DbAllocatedStorage: atoi("dbAllocatedStorage"), GatewayEngine: get("gatewayEngine"),
		ApiTunnelPort: atoi("apiTunnelPort"), VpcCidr: get("vpcCidr")}
}

// one returns the single resource of typ, failing otherwise.
func one(t *testing.T, p *Plan, typ string) Resource {
	t.Helper()
	rs := p.ByType(typ)
	if len(rs) != 1 {
		t.Fatalf("%s: %d resources of type %s, want 1", p.Stack, len(rs), typ)
	}
	return rs[0]
}

// named returns the resource of typ called name, failing when there is none.
func named(t *testing.T, p *Plan, typ, name string) Resource {
	t.Helper()
	for _, r := range p.ByType(typ) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("%s: no %s named %s", p.Stack, typ, name)
	return Resource{}
}

// at reads a nested input by a dotted path ("vpcConfig.subnetIds", "items.0.name").
func at(v any, path string) any { return At(v, path) }

// asStrings reads a list input (or a single string, as IAM documents allow) as strings.
func asStrings(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// privateSubnetIDs are the ids the mocks gave the private subnets.
func privateSubnetIDs(p *Plan) []string {
	var ids []string
	for _, r := range p.ByType("aws:ec2/subnet:Subnet") {
		if strings.Contains(r.Name, "-private-") {
			ids = append(ids, r.Name+"-id")
		}
	}
	sort.Strings(ids)
	return ids
}

// sorted returns the strings of v in order, for comparing lists whose order does not matter.
func sorted(v any) []string {
	out := asStrings(v)
	sort.Strings(out)
	return out
}

func forStacks(t *testing.T, test func(t *testing.T, p *Plan, cfg Config)) {
	for _, stack := range []string{"dev", "prod"} {
		t.Run(stack, func(t *testing.T) { test(t, planFor(t, stack), stackConfig(t, stack)) })
	}
}

func TestInventory(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		nats := 1
		if cfg.NatPerAz {
			nats = cfg.AzCount
		}
		want := map[string]int{
			"shopmesh:network:Network":                                1,
			"aws:ec2/vpc:Vpc":                                         1,
			"aws:ec2/subnet:Subnet":                                   2 * cfg.AzCount,
			"aws:ec2/internetGateway:InternetGateway":                 1,
			"aws:ec2/natGateway:NatGateway":                           nats,
			"aws:ec2/eip:Eip":                                         nats,
			"aws:ec2/routeTable:RouteTable":                           1 + cfg.AzCount,
			"aws:ec2/routeTableAssociation:RouteTableAssociation":     2 * cfg.AzCount,
			"shopmesh:registry:Registry":                              1,
			"aws:ecr/repository:Repository":                           len(Services),
			"aws:ecr/lifecyclePolicy:LifecyclePolicy":                 len(Services),
			"shopmesh:cluster:Cluster":                                1,
			"eks:index:Cluster":                                       1,
			"aws:eks/nodeGroup:NodeGroup":                             1,
			"aws:ec2/launchTemplate:LaunchTemplate":                   1,
			"pulumi:providers:kubernetes":                             1,
			"aws:eks/addon:Addon":                                     3, // vpc-cni, metrics-server, amazon-cloudwatch-observability
			"aws:eks/accessEntry:AccessEntry":                         2 + len(cfg.ClusterAdminArns),
			"aws:eks/accessPolicyAssociation:AccessPolicyAssociation": 2 + len(cfg.ClusterAdminArns),
			"aws:ec2/subnetCidrReservation:SubnetCidrReservation":     cfg.AzCount,
			"shopmesh:access:ApiTunnel":                               1,
			"aws:ec2/instance:Instance":                               1,
			"shopmesh:database:Database":                              1,
			"aws:rds/instance:Instance":                               1,
			"aws:rds/subnetGroup:SubnetGroup":                         1,
		}
		perService := map[string]int{
			"kubernetes:apps/v1:Deployment": 1, "kubernetes:core/v1:Service": 1, "kubernetes:core/v1:ServiceAccount": 1,
			"kubernetes:core/v1:ConfigMap": 1, "kubernetes:security.istio.io/v1:AuthorizationPolicy": 1,
			"kubernetes:networking.istio.io/v1:DestinationRule": 1,
		}
		for typ, n := range perService {
			want[typ] = n * len(Services)
		}
		want["kubernetes:core/v1:ServiceAccount"]++ // the bootstrap Job's
		scaled, waf, releases := 0, 0, 4
		if cfg.Autoscaling {
			scaled, releases = len(Services), 5 // the Cluster Autoscaler
		}
		if cfg.EnableWaf {
			waf = 1
		}
		for typ, n := range map[string]int{
			"shopmesh:edge:Edge": 1, "shopmesh:mesh:Mesh": 1, "shopmesh:workloads:Workloads": 1,
			"aws:lb/loadBalancer:LoadBalancer": 1, "aws:lb/targetGroup:TargetGroup": 1, "aws:lb/listener:Listener": 1,
			"aws:apigateway/restApi:RestApi": 1, "aws:apigateway/vpcLink:VpcLink": 1,
			"aws:apigateway/resource:Resource": 2 * len(APIServices), "aws:apigateway/method:Method": 2*len(APIServices) + 1,
			"aws:apigateway/deployment:Deployment": 1, "aws:apigateway/stage:Stage": 1, "aws:apigateway/methodSettings:MethodSettings": 2,
			"aws:apigateway/usagePlan:UsagePlan": 0, "aws:cloudwatch/logGroup:LogGroup": 3 + len(containerLogGroups),
			"aws:cloudwatch/metricAlarm:MetricAlarm": 5 + len(Services), "aws:cloudwatch/dashboard:Dashboard": 1, "aws:sns/topic:Topic": 1,
			"aws:cloudwatch/logMetricFilter:LogMetricFilter": 1, "shopmesh:observability:Observability": 1,
			"aws:wafv2/webAcl:WebAcl": waf, "aws:wafv2/webAclAssociation:WebAclAssociation": waf,
			"kubernetes:helm.sh/v3:Release": releases, "kubernetes:core/v1:Namespace": 2, "kubernetes:core/v1:Secret": 0,
			"kubernetes:networking.k8s.io/v1:NetworkPolicy": 3 + len(Services), // and the bootstrap Job's
			"kubernetes:batch/v1:Job":                       1, "aws:secretsmanager/secret:Secret": len(dataServices),
			"kubernetes:security.istio.io/v1:PeerAuthentication": 2, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding": 1,
			"kubernetes:autoscaling/v2:HorizontalPodAutoscaler": scaled, "kubernetes:policy/v1:PodDisruptionBudget": scaled,
			"kubernetes:core/v1:ConfigMap": len(Services) + 1, // and the gateway's route table
			"shopmesh:cache:Cache":         1, "aws:elasticache/replicationGroup:ReplicationGroup": 1, "aws:elasticache/user:User": 1,
			"aws:elasticache/userGroup:UserGroup": 1, "aws:elasticache/subnetGroup:SubnetGroup": 1,
		} {
			want[typ] = n
		}
		counts := p.Counts()
		for typ, n := range want {
			if counts[typ] != n {
				t.Errorf("%s: %d × %s, want %d", p.Stack, counts[typ], typ, n)
			}
		}
	})
}

func TestComponentsParentTheirResources(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		checked := 0
		for _, r := range p.Resources {
			if strings.HasPrefix(r.Type, "shopmesh:") || r.Type == "pulumi:pulumi:Stack" {
				continue
			}
			checked++
			if r.Parent == "" || !strings.Contains(r.Parent, "shopmesh:") {
				t.Errorf("%s %s is not a child of a shopmesh component (parent %q)", r.Type, r.Name, r.Parent)
			}
		}
		if checked < 30 {
			t.Errorf("checked only %d resources", checked)
		}
	})
}

func TestNetworkIsPrivateByDefault(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		subnets := p.ByType("aws:ec2/subnet:Subnet")
		for _, s := range subnets {
			if s.Inputs["mapPublicIpOnLaunch"] != false {
				t.Errorf("subnet %s maps public IPs on launch", s.Name)
			}
			role := "kubernetes.io/role/elb"
			if strings.Contains(s.Name, "-private-") {
				role = "kubernetes.io/role/internal-elb"
			}
			tags, _ := s.Inputs["tags"].(map[string]any)
			if tags[role] != "1" || tags["kubernetes.io/cluster/shopmesh-"+p.Stack+"-eks"] != "shared" {
				t.Errorf("subnet %s lacks the EKS tags %s and kubernetes.io/cluster/…", s.Name, role)
			}
		}
		privateRoutes := 0
		for _, rt := range p.ByType("aws:ec2/routeTable:RouteTable") {
			if strings.Contains(rt.Name, "-private-") {
				privateRoutes++
				if at(rt.Inputs, "routes.0.natGatewayId") == nil || at(rt.Inputs, "routes.0.gatewayId") != nil {
					t.Errorf("private route table %s does not route out through NAT only: %v", rt.Name, rt.Inputs["routes"])
				}
			}
		}
		if privateRoutes != cfg.AzCount {
			t.Errorf("%d private route tables, want %d", privateRoutes, cfg.AzCount)
		}
	})
}

func TestClusterSecurity(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		eks := one(t, p, "eks:index:Cluster")
		if got := asStrings(eks.Inputs["enabledClusterLogTypes"]); !reflect.DeepEqual(got, ControlPlaneLogTypes) {
			t.Errorf("control-plane logs = %v, want all of %v", got, ControlPlaneLogTypes)
		}
		if key, _ := eks.Inputs["encryptionConfigKeyArn"].(string); !strings.HasPrefix(key, "arn:aws:kms:") {
			t.Errorf("secrets encryption key = %v", eks.Inputs["encryptionConfigKeyArn"])
		}
		if eks.Inputs["createOidcProvider"] != true || eks.Inputs["skipDefaultNodeGroup"] != true {
			t.Errorf("createOidcProvider/skipDefaultNodeGroup = %v/%v", eks.Inputs["createOidcProvider"], eks.Inputs["skipDefaultNodeGroup"])
		}
		if eks.Inputs["endpointPrivateAccess"] != true || eks.Inputs["endpointPublicAccess"] != cfg.EndpointPublicAccess {
			t.Errorf("endpoint private/public = %v/%v, want true/%v", eks.Inputs["endpointPrivateAccess"], eks.Inputs["endpointPublicAccess"], cfg.EndpointPublicAccess)
		}
		if got := sorted(eks.Inputs["privateSubnetIds"]); !reflect.DeepEqual(got, privateSubnetIDs(p)) {
			t.Errorf("cluster subnets = %v, want the private ones %v", got, privateSubnetIDs(p))
		}

		nodes := one(t, p, "aws:eks/nodeGroup:NodeGroup")
		if got := sorted(nodes.Inputs["subnetIds"]); !reflect.DeepEqual(got, privateSubnetIDs(p)) {
			t.Errorf("node group subnets = %v, want the private ones", got)
		}
		lt := one(t, p, "aws:ec2/launchTemplate:LaunchTemplate")
		if at(lt.Inputs, "metadataOptions.httpTokens") != "required" || at(lt.Inputs, "metadataOptions.httpPutResponseHopLimit") != float64(1) {
			t.Errorf("launch template metadata = %v, want IMDSv2 required with hop limit 1", lt.Inputs["metadataOptions"])
		}
		if at(nodes.Inputs, "launchTemplate.id") != lt.Name+"-id" {
			t.Errorf("node group does not use the launch template: %v", nodes.Inputs["launchTemplate"])
		}
		// The stand-in carries the same settings in the shape a real preview shows.
		child := one(t, p, "aws:eks/cluster:Cluster")
		if !child.StandIn || at(child.Inputs, "vpcConfig.endpointPublicAccess") != cfg.EndpointPublicAccess {
			t.Errorf("EKS stand-in = %+v", child)
		}
	})
}

func TestRegistry(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		for _, r := range p.ByType("aws:ecr/repository:Repository") {
			if r.Inputs["imageTagMutability"] != "IMMUTABLE" || at(r.Inputs, "imageScanningConfiguration.scanOnPush") != true ||
				at(r.Inputs, "encryptionConfigurations.0.encryptionType") != "KMS" {
				t.Errorf("repository %s: %v", r.Name, r.Inputs)
			}
		}
		for _, lp := range p.ByType("aws:ecr/lifecyclePolicy:LifecyclePolicy") {
			var policy struct {
				Rules []struct {
					Selection struct {
						TagStatus      string
						TagPatternList []string
						CountNumber    int
					} `json:"selection"`
				} `json:"rules"`
			}
			// Tagged images only: a multi-architecture release is an index and untagged
			// per-platform manifests, which a rule of tagStatus any counts too.
			if err := json.Unmarshal([]byte(lp.Inputs["policy"].(string)), &policy); err != nil || len(policy.Rules) != 1 || policy.Rules[0].Selection.CountNumber != cfg.EcrKeepImages ||
				policy.Rules[0].Selection.TagStatus != "tagged" || !slices.Equal(policy.Rules[0].Selection.TagPatternList, []string{"*"}) {
				t.Errorf("lifecycle policy %s keeps %+v (%v), want the newest %d tagged images", lp.Name, policy, err, cfg.EcrKeepImages)
			}
		}
	})
}

func TestDatabase(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		db := one(t, p, "aws:rds/instance:Instance")
		for key, want := range map[string]any{
			"publiclyAccessible":       false,
			"storageEncrypted":         true,
			"manageMasterUserPassword": true,
			"multiAz":                  cfg.DbMultiAz,
			"deletionProtection":       cfg.DbDeletionProtection,
			"backupRetentionPeriod":    float64(cfg.DbBackupRetentionDays),
			"skipFinalSnapshot":        !cfg.Prod(),
		} {
			if db.Inputs[key] != want {
				t.Errorf("rds %s = %v, want %v", key, db.Inputs[key], want)
			}
		}
		if _, hasPassword := db.Inputs["password"]; hasPassword {
			t.Error("rds has a password input; Secrets Manager must manage it")
		}
		group := one(t, p, "aws:rds/subnetGroup:SubnetGroup")
		if got := sorted(group.Inputs["subnetIds"]); !reflect.DeepEqual(got, privateSubnetIDs(p)) {
			t.Errorf("db subnet group = %v, want the private subnets", got)
		}
		sg := named(t, p, "aws:ec2/securityGroup:SecurityGroup", "database")
		ingress, _ := sg.Inputs["ingress"].([]any)
		if len(ingress) != 1 || at(ingress[0], "fromPort") != float64(5432) || at(ingress[0], "cidrBlocks") != nil ||
			!reflect.DeepEqual(asStrings(at(ingress[0], "securityGroups")), []string{"sg-shopmesh-" + p.Stack + "-eks-cluster"}) {
			t.Errorf("db security group ingress = %v, want 5432 from the cluster security group only", ingress)
		}
	})
}

func TestEncryptionKeysRotate(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		keys := p.ByType("aws:kms/key:Key")
		if len(keys) < 3 {
			t.Fatalf("%d KMS keys, want one each for EKS secrets, ECR and RDS", len(keys))
		}
		for _, k := range keys {
			if k.Inputs["enableKeyRotation"] != true {
				t.Errorf("KMS key %s does not rotate", k.Name)
			}
		}
	})
}

func TestAWSResourcesAreTagged(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		tagged := 0
		for _, r := range p.Resources {
			tags, ok := r.Inputs["tags"].(map[string]any)
			if !ok || r.StandIn {
				continue
			}
			tagged++
			if tags["project"] != "shopmesh" || tags["environment"] != p.Stack {
				t.Errorf("%s %s tags = %v, want project and environment", r.Type, r.Name, tags)
			}
		}
		if tagged < 20 {
			t.Errorf("only %d tagged resources checked", tagged)
		}
	})
}

func TestDevAndProdDiffer(t *testing.T) {
	dev, prod := planFor(t, "dev"), planFor(t, "prod")
	diffs := []struct {
		what      string
		dev, prod any
	}{
		{"subnets", len(dev.ByType("aws:ec2/subnet:Subnet")), len(prod.ByType("aws:ec2/subnet:Subnet"))},
		{"NAT gateways", len(dev.ByType("aws:ec2/natGateway:NatGateway")), len(prod.ByType("aws:ec2/natGateway:NatGateway"))},
		{"node types", fmt.Sprint(one(t, dev, "aws:eks/nodeGroup:NodeGroup").Inputs["instanceTypes"]), fmt.Sprint(one(t, prod, "aws:eks/nodeGroup:NodeGroup").Inputs["instanceTypes"])},
		{"node max", at(one(t, dev, "aws:eks/nodeGroup:NodeGroup").Inputs, "scalingConfig.maxSize"), at(one(t, prod, "aws:eks/nodeGroup:NodeGroup").Inputs, "scalingConfig.maxSize")},
		{"RDS class", one(t, dev, "aws:rds/instance:Instance").Inputs["instanceClass"], one(t, prod, "aws:rds/instance:Instance").Inputs["instanceClass"]},
		{"Multi-AZ", one(t, dev, "aws:rds/instance:Instance").Inputs["multiAz"], one(t, prod, "aws:rds/instance:Instance").Inputs["multiAz"]},
		{"deletion protection", one(t, dev, "aws:rds/instance:Instance").Inputs["deletionProtection"], one(t, prod, "aws:rds/instance:Instance").Inputs["deletionProtection"]},
	}
	for _, d := range diffs {
		if reflect.DeepEqual(d.dev, d.prod) {
			t.Errorf("%s: dev and prod are both %v", d.what, d.dev)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{Project: "shopmesh", Stack: "dev", Environment: "dev", VpcCidr: "10.0.0.0/16", AzCount: 2, NodeInstanceTypes: []string{"t3.large"},
		KubeApiAccess: "tunnel", ApiTunnelPort: 8443, GithubRepository: "acme/shop", Workloads: true,
		NodeMinSize: 1, NodeDesiredSize: 1, NodeMaxSize: 2, ImageTag: "0.1.0", Replicas: 1, EcrKeepImages: 5,
		DbInstanceClass: "db.t4g.micro", DbAllocatedStorage: 20, CacheNodeType: "cache.t4g.micro", DbBackupRetentionDays: 1, ApiThrottleRate: 1,
		ApiThrottleBurst: 1, OrdersThrottleRate: 1, OrdersThrottleBurst: 1, LoginPerMinute: 1, LoginBurst: 1, SignupPerMinute: 1, SignupBurst: 1,
		LogRetentionDays: 7, Alarm5xxPercent: 5, AlarmLatencyP99Ms: 3000, AlarmDbCpuPercent: 90, AlarmDbFreeStoragePercent: 10, AlarmPodRestarts: 5,
		TraceSamplePercent: 100, GatewayEngine: "loop"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, ok := range []func(*Config){
		func(c *Config) { c.Workloads, c.ImageTag = false, "" }, // the first stage: no images yet
		func(c *Config) {
			c.KubeApiAccess, c.EndpointPublicAccess, c.PublicAccessCidrs = "public", true, []string{"198.18.7.10/32", "52.94.0.0/22"}
		},
		func(c *Config) {
			c.GithubRepository, c.ClusterAdminArns = "", []string{"arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/Admin"}
		},
	} {
		c := good
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("valid config %+v refused: %v", c, err)
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"environment", func(c *Config) { c.Environment = "staging" }, "environment must be dev or prod"},
		{"cidr", func(c *Config) { c.VpcCidr = "10.0.0.0/8" }, "vpcCidr"},
		{"zones", func(c *Config) { c.AzCount = 4 }, "azCount"},
		{"node sizes", func(c *Config) { c.NodeDesiredSize = 5 }, "nodeMinSize <= nodeDesiredSize"},
		{"latest tag", func(c *Config) { c.ImageTag = "latest" }, "imageTag"},
		{"retention", func(c *Config) { c.LogRetentionDays = 10 }, "logRetentionDays"},
		{"open endpoint", func(c *Config) { c.EndpointPublicAccess, c.PublicAccessCidrs = true, []string{"0.0.0.0/0"} }, "wider than /8"},
		{"public endpoint without CIDRs", func(c *Config) { c.EndpointPublicAccess = true }, "publicAccessCidrs is empty"},
		{"documentation range", func(c *Config) { c.EndpointPublicAccess, c.PublicAccessCidrs = true, []string{"203.0.113.0/24"} }, "not a public address range"},
		{"private range on a public endpoint", func(c *Config) { c.EndpointPublicAccess, c.PublicAccessCidrs = true, []string{"10.1.0.0/16"} }, "not a public address range"},
		{"host bits", func(c *Config) { c.EndpointPublicAccess, c.PublicAccessCidrs = true, []string{"198.18.7.10/24"} }, "IPv4 CIDRs"},
		{"CIDRs without a public endpoint", func(c *Config) { c.PublicAccessCidrs = []string{"198.18.7.10/32"} }, "endpointPublicAccess is false"},
		{"public access to a private-only endpoint", func(c *Config) { c.KubeApiAccess = "public" }, "nothing outside the VPC could reach the API"},
		{"unknown access", func(c *Config) { c.KubeApiAccess = "vpn" }, "kubeApiAccess must be"},
		{"gateway engine", func(c *Config) { c.GatewayEngine = "nginx" }, "gatewayEngine must be loop or nethttp"},
		{"autoscaler chart for another cluster version", func(c *Config) {
			c.Autoscaling, c.HpaMaxReplicas, c.ClusterVersion, c.ClusterAutoscalerVersion = true, 4, "1.33", "9.43.1"
		}, "not a Cluster Autoscaler chart built for Kubernetes 1.33"},
		{"tunnel port", func(c *Config) { c.ApiTunnelPort = 443 }, "apiTunnelPort"},
		{"no image for the workloads", func(c *Config) { c.ImageTag = "" }, "imageTag is not set"},
		{"admin ARN", func(c *Config) { c.ClusterAdminArns = []string{"admin"} }, "clusterAdminArns entries"},
		{"deploy role listed as admin", func(c *Config) { c.ClusterAdminArns = []string{"arn:aws:iam::123456789012:role/shopmesh-dev-deploy"} }, "lists the deploy role"},
		{"nobody could reach the cluster", func(c *Config) { c.GithubRepository = "" }, "nobody but the principal"},
	}
	for _, tt := range tests {
		c := good
		tt.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want an error mentioning %q", tt.name, err, tt.want)
		}
	}
}

// TestDeployRole: the deploy role is trusted only for this repository's jobs in the stack's
// environment, the preview role only for preview-<stack>, both through GitHub's OIDC provider.
func TestDeployRole(t *testing.T) {
	for _, stack := range []string{"dev", "prod"} {
		p := planFor(t, stack)
		// The account stack owns the GitHub OIDC provider; each environment looks it up.
		looked := false
		for _, call := range p.Invokes {
			looked = looked || call.Token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider" && call.Args["url"] == GithubOIDCURL
		}
		if !looked {
			t.Errorf("%s does not look the account's GitHub OIDC provider up", stack)
		}
		for name, environment := range map[string]string{"deploy": stack, "preview": "preview-" + stack} {
			role := named(t, p, "aws:iam/role:Role", name)
			if role.Inputs["name"] != "shopmesh-"+stack+"-"+name || !strings.Contains(role.Parent, "shopmesh:ci:DeployRole") {
				t.Errorf("%s: %s role %v", stack, name, role.Inputs)
			}
			st := trustStatement(t, role)
			if fed := st.Principal["Federated"]; len(fed) != 1 || !strings.HasSuffix(fed[0], ":oidc-provider/"+GithubOIDCIssuer) && fed[0] != "ci-github-id" {
				t.Errorf("%s: %s trusts %v, want the GitHub OIDC provider", stack, name, fed)
			}
			want := []string{"repo:shopmesh/shopmesh:environment:" + environment}
			if subs := st.Condition["StringEquals"][GithubOIDCIssuer+":sub"]; st.Action[0] != "sts:AssumeRoleWithWebIdentity" || !reflect.DeepEqual(subs, want) ||
				st.Condition["StringEquals"][GithubOIDCIssuer+":aud"][0] != "sts.amazonaws.com" {
				t.Errorf("%s: %s trust statement %+v, want web identity for %v only, audience sts.amazonaws.com", stack, name, st, want)
			}
		}
		for _, out := range []string{"deployRoleArn", "previewRoleArn"} {
			if p.Outputs[out] == nil {
				t.Errorf("%s: no %s output", stack, out)
			}
		}
	}
}

// trustStatement is the single statement of an IAM role's assume-role policy.
func trustStatement(t *testing.T, role Resource) trustPolicyStatement {
	t.Helper()
	var trust struct{ Statement []trustPolicyStatement }
	if err := json.Unmarshal([]byte(fmt.Sprint(role.Inputs["assumeRolePolicy"])), &trust); err != nil || len(trust.Statement) != 1 {
		t.Fatalf("%s: trust policy %v: %v", role.Name, role.Inputs["assumeRolePolicy"], err)
	}
	return trust.Statement[0]
}

type trustPolicyStatement struct {
	Action    []string
	Principal map[string][]string
	Condition map[string]map[string][]string
}
