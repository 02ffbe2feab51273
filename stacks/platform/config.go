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
	NodeInstanceTypes    []string
	NodeMinSize          int
	NodeDesiredSize      int
	NodeMaxSize          int

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

	ApiThrottleRate         float64
	ApiThrottleBurst        int
	OrdersThrottleRate      float64
	OrdersThrottleBurst     int
	LogRetentionDays        int
	EnableWaf               bool
	WafRateLimit            int
	ManageApiGatewayAccount bool

	GithubRepository      string // owner/name allowed to deploy through GitHub OIDC; empty: no deploy role
	GithubOidcProviderArn string // the account's GitHub OIDC provider; empty: the stack creates it

	IstioVersion        string
	LbControllerVersion string
}

var githubRepo = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)

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
	flt := func(dst *float64) func(string) error {
		return func(k string) (err error) { *dst, err = c.TryFloat64(k); return err }
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
	try("nodeInstanceTypes", list(&cfg.NodeInstanceTypes))
	try("nodeMinSize", num(&cfg.NodeMinSize))
	try("nodeDesiredSize", num(&cfg.NodeDesiredSize))
	try("nodeMaxSize", num(&cfg.NodeMaxSize))
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
	try("apiThrottleRate", flt(&cfg.ApiThrottleRate))
	try("apiThrottleBurst", num(&cfg.ApiThrottleBurst))
	try("ordersThrottleRate", flt(&cfg.OrdersThrottleRate))
	try("ordersThrottleBurst", num(&cfg.OrdersThrottleBurst))
	try("logRetentionDays", num(&cfg.LogRetentionDays))
	try("enableWaf", flag(&cfg.EnableWaf))
	try("wafRateLimit", num(&cfg.WafRateLimit))
	try("manageApiGatewayAccount", flag(&cfg.ManageApiGatewayAccount))
	try("githubRepository", str(&cfg.GithubRepository))
	try("githubOidcProviderArn", str(&cfg.GithubOidcProviderArn))
	try("istioVersion", str(&cfg.IstioVersion))
	try("lbControllerVersion", str(&cfg.LbControllerVersion))
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
	bad(c.ImageTag != "" && c.ImageTag != "latest", "imageTag must be a fixed tag (ECR tags are immutable), got %q", c.ImageTag)
	bad(c.Replicas >= 1, "replicas must be at least 1, got %d", c.Replicas)
	bad(!c.Autoscaling || c.HpaMaxReplicas >= c.Replicas, "hpaMaxReplicas (%d) must be at least replicas (%d)", c.HpaMaxReplicas, c.Replicas)
	bad(c.EcrKeepImages >= 1, "ecrKeepImages must be at least 1")
	bad(strings.HasPrefix(c.DbInstanceClass, "db."), "dbInstanceClass must be an RDS class such as db.t4g.micro, got %q", c.DbInstanceClass)
	bad(c.DbAllocatedStorage >= 20, "dbAllocatedStorage must be at least 20 (GiB), got %d", c.DbAllocatedStorage)
	bad(c.DbBackupRetentionDays >= 1 && c.DbBackupRetentionDays <= 35, "dbBackupRetentionDays must be 1 to 35, got %d", c.DbBackupRetentionDays)
	bad(c.ApiThrottleRate > 0 && c.ApiThrottleBurst > 0, "apiThrottleRate and apiThrottleBurst must be positive")
	bad(c.OrdersThrottleRate > 0 && c.OrdersThrottleBurst > 0, "ordersThrottleRate and ordersThrottleBurst must be positive")
	bad(slices.Contains(cloudWatchRetention, c.LogRetentionDays), "logRetentionDays must be one CloudWatch accepts (1, 3, 5, 7, 14, 30, 60, 90, …), got %d", c.LogRetentionDays)
	bad(!c.EnableWaf || c.WafRateLimit >= 10, "wafRateLimit must be at least 10 requests per 5 minutes, got %d", c.WafRateLimit)
	bad(c.EndpointPublicAccess || len(c.PublicAccessCidrs) == 0, "publicAccessCidrs is set but endpointPublicAccess is false")
	for _, cidr := range c.PublicAccessCidrs {
		_, err := netip.ParsePrefix(cidr)
		bad(err == nil && cidr != "0.0.0.0/0", "publicAccessCidrs entries must be specific CIDRs (not 0.0.0.0/0), got %q", cidr)
	}
	bad(c.GithubRepository == "" || githubRepo.MatchString(c.GithubRepository), "githubRepository must be owner/name, got %q", c.GithubRepository)
	bad(c.GithubOidcProviderArn == "" || strings.HasPrefix(c.GithubOidcProviderArn, "arn:aws:iam::"),
		"githubOidcProviderArn must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com), got %q", c.GithubOidcProviderArn)
	if len(errs) > 0 {
		return fmt.Errorf("stack configuration: %s", strings.Join(errs, "; "))
	}
	return nil
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
