// Package platform is the shopmesh Pulumi program: the AWS footprint and the Kubernetes
// workloads for one stack, one ComponentResource per concern. stacks/main.go runs Program;
// tests and `shopmesh plan` run it offline through Plan.
package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// Config is the stack's configuration, read once. Every key is declared, with its type,
// default and meaning, in Pulumi.yaml; the stack files set what differs.
type Config struct {
	Project     string
	Stack       string
	Environment string // dev or prod
	Region      string // aws:region

	VpcCidr  string
	AzCount  int
	NatPerAz bool // one NAT gateway per AZ, else one shared

	ClusterVersion       string
	EndpointPublicAccess bool
	PublicAccessCidrs    []string
	// KubeApiAccess is how `pulumi up` reaches the cluster's API: "tunnel" (through an SSM port
	// forward to the private endpoint on 127.0.0.1:ApiTunnelPort) or "public" (the public endpoint,
	// from an address in PublicAccessCidrs).
	KubeApiAccess     string
	ApiTunnelPort     int
	ClusterAdminArns  []string // IAM roles or users given EKS cluster admin through access entries
	NodeInstanceTypes []string
	NodeMinSize       int
	NodeDesiredSize   int
	NodeMaxSize       int

	// Workloads false holds back everything that talks to the Kubernetes API (the first deploy's
	// first stage: infrastructure and registries before any image exists).
	Workloads      bool
	ImageTag       string
	Replicas       int
	Autoscaling    bool // HorizontalPodAutoscaler and PodDisruptionBudget per service
	HpaMaxReplicas int
	EcrKeepImages  int

	DbInstanceClass       string
	DbAllocatedStorage    int
	DbMultiAz             bool
	DbDeletionProtection  bool
	DbBackupRetentionDays int

	CacheNodeType string // the rate-limit cache's ElastiCache node type

	ApiThrottleRate     int
	ApiThrottleBurst    int
	OrdersThrottleRate  int
	OrdersThrottleBurst int
	LoginPerMinute      int // the in-cluster gateway's limits per client address
	LoginBurst          int
	SignupPerMinute     int
	SignupBurst         int
	GatewayEngine       string // the gateway's GATEWAY_ENGINE: loop or nethttp
	LogRetentionDays    int
	// Alarms go to a topic that mails AlarmEmails; the thresholds are per stack.
	AlarmEmails               []string
	Alarm5xxPercent           int
	AlarmLatencyP99Ms         int
	AlarmDbCpuPercent         int
	AlarmDbFreeStoragePercent int
	AlarmPodRestarts          int
	TraceSamplePercent        int    // of the traces that start at the gateway
	CloudWatchAddonVersion    string // empty: EKS's default for the cluster version
	EnableWaf                 bool
	WafRateLimit              int

	GithubRepository string // owner/name allowed to deploy through GitHub OIDC; empty: no deploy role

	// BoundaryArn is the account stack's permissions boundary (looked up, not configured).
	BoundaryArn string

	IstioVersion        string
	LbControllerVersion string
	// ClusterAutoscalerVersion is the Cluster Autoscaler chart: one built for ClusterVersion
	// (autoscalerCharts), whose own image is used.
	ClusterAutoscalerVersion string
}

var (
	githubRepo   = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	principalArn = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$`)
)

// notPublic are address ranges that never appear as the source of a request to a public
// endpoint: private, shared, loopback, link-local and the RFC 5737 documentation ranges.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
}

// apiAccessErrors checks that the place `pulumi up` runs from can reach the cluster's API.
func (c Config) apiAccessErrors() []string {
	var errs []string
	switch c.KubeApiAccess {
	case "tunnel":
		if c.ApiTunnelPort < 1024 || c.ApiTunnelPort > 65535 {
			errs = append(errs, fmt.Sprintf("apiTunnelPort must be a local port from 1024 to 65535, got %d", c.ApiTunnelPort))
		}
	case "public":
		if !c.EndpointPublicAccess {
			errs = append(errs, "kubeApiAccess is public but endpointPublicAccess is false: nothing outside the VPC could reach the API; "+
				"set endpointPublicAccess=true with publicAccessCidrs, or kubeApiAccess=tunnel")
		}
	default:
		errs = append(errs, fmt.Sprintf("kubeApiAccess must be tunnel (SSM port forward to the private endpoint) or public, got %q", c.KubeApiAccess))
	}
	if c.EndpointPublicAccess && len(c.PublicAccessCidrs) == 0 {
		errs = append(errs, "endpointPublicAccess is true but publicAccessCidrs is empty: EKS would open the API to 0.0.0.0/0; "+
			"list the public addresses that may reach it, e.g. pulumi config set --path 'publicAccessCidrs[0]' <your address>/32")
	}
	if !c.EndpointPublicAccess && len(c.PublicAccessCidrs) > 0 {
		errs = append(errs, "publicAccessCidrs is set but endpointPublicAccess is false")
	}
	for _, cidr := range c.PublicAccessCidrs {
		p, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil || !p.Addr().Is4() || p.Masked() != p:
			errs = append(errs, fmt.Sprintf("publicAccessCidrs entries must be IPv4 CIDRs such as 198.18.7.10/32, got %q", cidr))
		case p.Bits() < 8:
			errs = append(errs, fmt.Sprintf("publicAccessCidrs entry %q is wider than /8: name the addresses pulumi up runs from", cidr))
		default:
			for _, np := range notPublic {
				if np.Overlaps(p) {
					errs = append(errs, fmt.Sprintf("publicAccessCidrs entry %q is not a public address range (it overlaps %s), so it can never reach a public endpoint", cidr, np))
					break
				}
			}
		}
	}
	return errs
}

// Services are the workloads the platform runs, the gateway first.
var Services = []string{"gateway", "users", "products", "orders"}

// cloudWatchRetention lists the retention periods CloudWatch Logs accepts.
var cloudWatchRetention = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// LoadConfig reads and validates the stack configuration, naming every bad key.
func LoadConfig(ctx *pulumi.Context) (Config, error) {
	c := config.New(ctx, "")
	aws := config.New(ctx, "aws")
	var errs []error
	try := func(key string, f func(string) error) {
		if err := f(key); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	str := func(dst *string) func(string) error {
		return func(k string) (err error) { *dst, err = c.Try(k); return err }
	}
	num := func(dst *int) func(string) error {
		return func(k string) (err error) { *dst, err = c.TryInt(k); return err }
	}
	flag := func(dst *bool) func(string) error {
		return func(k string) (err error) { *dst, err = c.TryBool(k); return err }
	}
	list := func(dst *[]string) func(string) error {
		return func(k string) error { return c.TryObject(k, dst) }
	}

	cfg := Config{Project: ctx.Project(), Stack: ctx.Stack()}
	try("aws:region", func(string) (err error) { cfg.Region, err = aws.Try("region"); return err })
	try("environment", str(&cfg.Environment))
	try("vpcCidr", str(&cfg.VpcCidr))
	try("azCount", num(&cfg.AzCount))
	try("natPerAz", flag(&cfg.NatPerAz))
	try("clusterVersion", str(&cfg.ClusterVersion))
	try("endpointPublicAccess", flag(&cfg.EndpointPublicAccess))
	try("publicAccessCidrs", list(&cfg.PublicAccessCidrs))
	try("kubeApiAccess", str(&cfg.KubeApiAccess))
	try("apiTunnelPort", num(&cfg.ApiTunnelPort))
	try("clusterAdminArns", list(&cfg.ClusterAdminArns))
	try("nodeInstanceTypes", list(&cfg.NodeInstanceTypes))
	try("nodeMinSize", num(&cfg.NodeMinSize))
	try("nodeDesiredSize", num(&cfg.NodeDesiredSize))
	try("nodeMaxSize", num(&cfg.NodeMaxSize))
	try("workloads", flag(&cfg.Workloads))
	try("imageTag", str(&cfg.ImageTag))
	try("replicas", num(&cfg.Replicas))
	try("autoscaling", flag(&cfg.Autoscaling))
	try("hpaMaxReplicas", num(&cfg.HpaMaxReplicas))
	try("ecrKeepImages", num(&cfg.EcrKeepImages))
	try("dbInstanceClass", str(&cfg.DbInstanceClass))
	try("dbAllocatedStorage", num(&cfg.DbAllocatedStorage))
	try("dbMultiAz", flag(&cfg.DbMultiAz))
	try("dbDeletionProtection", flag(&cfg.DbDeletionProtection))
	try("dbBackupRetentionDays", num(&cfg.DbBackupRetentionDays))
	try("cacheNodeType", str(&cfg.CacheNodeType))
	try("apiThrottleRate", num(&cfg.ApiThrottleRate))
	try("apiThrottleBurst", num(&cfg.ApiThrottleBurst))
	try("ordersThrottleRate", num(&cfg.OrdersThrottleRate))
	try("ordersThrottleBurst", num(&cfg.OrdersThrottleBurst))
	try("loginPerMinute", num(&cfg.LoginPerMinute))
	try("loginBurst", num(&cfg.LoginBurst))
	try("signupPerMinute", num(&cfg.SignupPerMinute))
	try("signupBurst", num(&cfg.SignupBurst))
	try("gatewayEngine", str(&cfg.GatewayEngine))
	try("logRetentionDays", num(&cfg.LogRetentionDays))
	try("alarmEmails", list(&cfg.AlarmEmails))
	try("alarm5xxPercent", num(&cfg.Alarm5xxPercent))
	try("alarmLatencyP99Ms", num(&cfg.AlarmLatencyP99Ms))
	try("alarmDbCpuPercent", num(&cfg.AlarmDbCpuPercent))
	try("alarmDbFreeStoragePercent", num(&cfg.AlarmDbFreeStoragePercent))
	try("alarmPodRestarts", num(&cfg.AlarmPodRestarts))
	try("traceSamplePercent", num(&cfg.TraceSamplePercent))
	try("cloudwatchAddonVersion", str(&cfg.CloudWatchAddonVersion))
	try("enableWaf", flag(&cfg.EnableWaf))
	try("wafRateLimit", num(&cfg.WafRateLimit))
	try("githubRepository", str(&cfg.GithubRepository))
	try("istioVersion", str(&cfg.IstioVersion))
	try("lbControllerVersion", str(&cfg.LbControllerVersion))
	try("clusterAutoscalerVersion", str(&cfg.ClusterAutoscalerVersion))
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("stack %s configuration (see Pulumi.yaml for every key): %w", ctx.Stack(), errors.Join(errs...))
	}
	return cfg, cfg.Validate()
}

// Validate checks the values together.
func (c Config) Validate() error {
	var errs []string
	bad := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	bad(c.Environment == "dev" || c.Environment == "prod", "environment must be dev or prod, got %q", c.Environment)
	prefix, err := netip.ParsePrefix(c.VpcCidr)
	bad(err == nil && prefix.Addr().Is4() && prefix.Bits() >= 16 && prefix.Bits() <= 20, "vpcCidr must be an IPv4 /16 to /20, got %q", c.VpcCidr)
	bad(c.AzCount >= 2 && c.AzCount <= 3, "azCount must be 2 or 3, got %d", c.AzCount)
	bad(len(c.NodeInstanceTypes) > 0, "nodeInstanceTypes must name at least one instance type")
	bad(c.NodeMinSize >= 1 && c.NodeMinSize <= c.NodeDesiredSize && c.NodeDesiredSize <= c.NodeMaxSize,
		"node sizes must satisfy 1 <= nodeMinSize <= nodeDesiredSize <= nodeMaxSize, got %d/%d/%d", c.NodeMinSize, c.NodeDesiredSize, c.NodeMaxSize)
	bad(!c.Workloads || c.ImageTag != "", "imageTag is not set: the workloads need images in ECR; push them (make push) and set imageTag to their tag, "+
		"or deploy with make deploy, which does both; workloads=false deploys the infrastructure alone")
	bad(c.ImageTag != "latest", "imageTag must be a fixed tag (ECR tags are immutable), got %q", c.ImageTag)
	bad(c.Replicas >= 1, "replicas must be at least 1, got %d", c.Replicas)
	bad(!c.Autoscaling || c.HpaMaxReplicas >= c.Replicas, "hpaMaxReplicas (%d) must be at least replicas (%d)", c.HpaMaxReplicas, c.Replicas)
	bad(c.EcrKeepImages >= 1, "ecrKeepImages must be at least 1")
	bad(strings.HasPrefix(c.DbInstanceClass, "db."), "dbInstanceClass must be an RDS class such as db.t4g.micro, got %q", c.DbInstanceClass)
	bad(c.DbAllocatedStorage >= 20, "dbAllocatedStorage must be at least 20 (GiB), got %d", c.DbAllocatedStorage)
	bad(c.DbBackupRetentionDays >= 1 && c.DbBackupRetentionDays <= 35, "dbBackupRetentionDays must be 1 to 35, got %d", c.DbBackupRetentionDays)
	bad(strings.HasPrefix(c.CacheNodeType, "cache."), "cacheNodeType must be an ElastiCache node type such as cache.t4g.micro, got %q", c.CacheNodeType)
	bad(c.ApiThrottleRate > 0 && c.ApiThrottleBurst > 0, "apiThrottleRate and apiThrottleBurst must be positive")
	bad(c.OrdersThrottleRate > 0 && c.OrdersThrottleBurst > 0, "ordersThrottleRate and ordersThrottleBurst must be positive")
	bad(c.LoginPerMinute > 0 && c.LoginBurst > 0, "loginPerMinute and loginBurst must be positive")
	bad(c.SignupPerMinute > 0 && c.SignupBurst > 0, "signupPerMinute and signupBurst must be positive")
	bad(slices.Contains([]string{"loop", "nethttp"}, c.GatewayEngine), "gatewayEngine must be loop or nethttp, got %q", c.GatewayEngine)
	bad(!c.Autoscaling || slices.Contains(autoscalerCharts[c.ClusterVersion], c.ClusterAutoscalerVersion),
		"clusterAutoscalerVersion %q is not a Cluster Autoscaler chart built for Kubernetes %s (its image must match the cluster's minor version, and charts before 9.46.3 lack RBAC the autoscaler needs); use one of %v",
		c.ClusterAutoscalerVersion, c.ClusterVersion, autoscalerCharts[c.ClusterVersion])
	bad(slices.Contains(cloudWatchRetention, c.LogRetentionDays), "logRetentionDays must be one CloudWatch accepts (1, 3, 5, 7, 14, 30, 60, 90, …), got %d", c.LogRetentionDays)
	bad(c.Alarm5xxPercent >= 1 && c.Alarm5xxPercent <= 100, "alarm5xxPercent must be 1 to 100, got %d", c.Alarm5xxPercent)
	bad(c.AlarmLatencyP99Ms >= 1, "alarmLatencyP99Ms must be positive, got %d", c.AlarmLatencyP99Ms)
	bad(c.AlarmDbCpuPercent >= 1 && c.AlarmDbCpuPercent <= 100, "alarmDbCpuPercent must be 1 to 100, got %d", c.AlarmDbCpuPercent)
	bad(c.AlarmDbFreeStoragePercent >= 1 && c.AlarmDbFreeStoragePercent < 100, "alarmDbFreeStoragePercent must be 1 to 99, got %d", c.AlarmDbFreeStoragePercent)
	bad(c.AlarmPodRestarts >= 1, "alarmPodRestarts must be at least 1, got %d", c.AlarmPodRestarts)
	bad(c.TraceSamplePercent >= 0 && c.TraceSamplePercent <= 100, "traceSamplePercent must be 0 to 100, got %d", c.TraceSamplePercent)
	for _, e := range c.AlarmEmails {
		bad(strings.Count(e, "@") == 1 && !strings.ContainsAny(e, " ,;") && strings.Contains(e[strings.Index(e, "@"):], "."),
			"alarmEmails entries must be email addresses, got %q", e)
	}
	bad(!c.EnableWaf || c.WafRateLimit >= 10, "wafRateLimit must be at least 10 requests per 5 minutes, got %d", c.WafRateLimit)
	errs = append(errs, c.apiAccessErrors()...)
	bad(c.GithubRepository == "" || githubRepo.MatchString(c.GithubRepository), "githubRepository must be owner/name, got %q", c.GithubRepository)
	for _, arn := range c.ClusterAdminArns {
		bad(!strings.HasSuffix(arn, ":role/"+c.Name("deploy")) || c.GithubRepository == "",
			"clusterAdminArns lists the deploy role %q, which already gets an access entry; remove it", arn)
		bad(principalArn.MatchString(arn), "clusterAdminArns entries must be IAM role or user ARNs (arn:aws:iam::<account>:role/<name>), got %q", arn)
	}
	bad(c.GithubRepository != "" || len(c.ClusterAdminArns) > 0,
		"nobody but the principal that creates the cluster could reach it: set clusterAdminArns (your admin role) or githubRepository (the CI deploy role)")
	if len(errs) > 0 {
		return fmt.Errorf("stack configuration: %s", strings.Join(errs, "; "))
	}
	return nil
}

// AdminEntries names the access entries for ClusterAdminArns after the principal (the last part
// of its ARN), so that reordering the list does not replace them.
func (c Config) AdminEntries() map[string]string {
	out := map[string]string{}
	for _, arn := range c.ClusterAdminArns {
		base := "admin-" + strings.ToLower(arn[strings.LastIndex(arn, "/")+1:])
		name := base
		for i := 2; out[name] != ""; i++ {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		out[name] = arn
	}
	return out
}

// Prod reports whether this is the production stack.
func (c Config) Prod() bool { return c.Environment == "prod" }

// Tags are put on every AWS resource that takes tags.
func (c Config) Tags(name string) pulumi.StringMap {
	return pulumi.StringMap{
		"Name":        pulumi.String(c.Project + "-" + c.Stack + "-" + name),
		"project":     pulumi.String(c.Project),
		"environment": pulumi.String(c.Environment),
		"managed-by":  pulumi.String("pulumi"),
	}
}

// Name prefixes a physical resource name with the project and stack.
func (c Config) Name(name string) string { return c.Project + "-" + c.Stack + "-" + name }
