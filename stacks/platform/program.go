package platform

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Namespace is where the shop's workloads run.
const Namespace = "shop"

// Program declares the whole platform for the current stack and returns the stack outputs.
func Program(ctx *pulumi.Context) (map[string]pulumi.Input, error) {
	cfg, err := LoadConfig(ctx)
	if err != nil {
		return nil, err
	}
	clusterName := cfg.Name("eks")
	// Every role this stack creates carries the account stack's boundary.
	if cfg.BoundaryArn, err = lookupBoundary(ctx); err != nil {
		return nil, err
	}

	network, err := NewNetwork(ctx, "network", NetworkArgs{Config: cfg, ClusterName: clusterName})
	if err != nil {
		return nil, err
	}
	registry, err := NewRegistry(ctx, "registry", RegistryArgs{Config: cfg, Services: Services})
	if err != nil {
		return nil, err
	}
	outputs := map[string]pulumi.Input{}
	// The CI roles come before the cluster: they get access entries.
	admins, viewers := map[string]pulumi.StringInput{}, map[string]pulumi.StringInput{}
	if cfg.GithubRepository != "" {
		role, err := NewDeployRole(ctx, "ci", DeployRoleArgs{Config: cfg})
		if err != nil {
			return nil, err
		}
		admins["deploy"], viewers["preview"] = role.Arn, role.PreviewArn
		outputs["deployRoleArn"] = role.Arn         // AWS_ROLE_ARN of the GitHub environment <stack>
		outputs["previewRoleArn"] = role.PreviewArn // AWS_ROLE_ARN of the GitHub environment preview-<stack>
	}
	for name, arn := range cfg.AdminEntries() {
		admins[name] = pulumi.String(arn)
	}
	logs, err := NewLogs(ctx, "logs", LogsArgs{Config: cfg, ClusterName: clusterName, DbIdentifier: cfg.Name("postgres")})
	if err != nil {
		return nil, err
	}
	cluster, err := NewCluster(ctx, "cluster", ClusterArgs{Config: cfg, Name: clusterName, Network: network, Admins: admins, Viewers: viewers,
		LogGroup: logs.EksLogGroup})
	if err != nil {
		return nil, err
	}
	database, err := NewDatabase(ctx, "database", DatabaseArgs{Config: cfg, Network: network, ClientSecurityGroupID: cluster.SecurityGroupID,
		LogGroup: logs.DbLogGroup})
	if err != nil {
		return nil, err
	}
	cache, err := NewCache(ctx, "cache", CacheArgs{Config: cfg, Network: network, ClientSecurityGroupID: cluster.SecurityGroupID})
	if err != nil {
		return nil, err
	}
	obs, err := NewObservability(ctx, "observability", ObservabilityArgs{Config: cfg, Cluster: cluster, ClusterName: clusterName, Logs: logs})
	if err != nil {
		return nil, err
	}
	edge, err := NewEdge(ctx, "edge", EdgeArgs{Config: cfg, Network: network, Cluster: cluster, LogsKeyArn: obs.LogsKeyArn})
	if err != nil {
		return nil, err
	}
	if err := obs.Watch(ctx, Watched{ApiName: edge.ApiName, Stage: StageName, AccessLogGroup: edge.AccessLogGroup,
		LoadBalancerArnSuffix: edge.LoadBalancerArnSuffix, TargetGroupArnSuffix: edge.TargetGroupArnSuffix,
		DbInstance: cfg.Name("postgres"), DbAllocatedGiB: cfg.DbAllocatedStorage, ClusterName: clusterName}); err != nil {
		return nil, err
	}
	var via []pulumi.Resource
	if cfg.KubeApiAccess == "tunnel" {
		tunnel, err := NewApiTunnel(ctx, "api-tunnel", ApiTunnelArgs{Config: cfg, Network: network, ClusterSecurityGroupID: cluster.SecurityGroupID})
		if err != nil {
			return nil, err
		}
		via = append(via, tunnel.Instance)
		outputs["apiTunnelInstanceId"] = tunnel.InstanceID // scripts/api-tunnel.sh
	}
	if cfg.Workloads {
		if _, err := cluster.NewProvider(ctx, via...); err != nil {
			return nil, err
		}
		mesh, err := NewMesh(ctx, "mesh", MeshArgs{Config: cfg, Provider: cluster.Provider, Namespace: Namespace})
		if err != nil {
			return nil, err
		}
		if _, err := NewWorkloads(ctx, "workloads", WorkloadsArgs{
			Config: cfg, Provider: cluster.Provider, Mesh: mesh, Network: network, Cluster: cluster,
			Registry: registry, Database: database, Cache: cache, TargetGroupArn: edge.TargetGroupArn,
		}); err != nil {
			return nil, err
		}
		outputs["imageTag"] = pulumi.String(cfg.ImageTag) // what is deployed: CI previews with it
	}

	repos := pulumi.StringMap{}
	for svc, url := range registry.RepositoryURLs {
		repos[svc] = url
	}
	outputs["clusterName"] = cluster.Name
	outputs["clusterEndpoint"] = cluster.Endpoint
	outputs["kubeconfig"] = cluster.Kubeconfig
	outputs["repositoryUrls"] = repos
	outputs["databaseEndpoint"] = database.Address
	outputs["cacheEndpoint"] = cache.Address
	outputs["alarmTopicArn"] = obs.TopicArn
	outputs["apiUrl"] = edge.ApiURL
	outputs["nlbDnsName"] = edge.NlbDNSName
	return outputs, nil
}

// Run is stacks/main.go's entry point: the program with its outputs exported.
func Run(ctx *pulumi.Context) error { return exported(ctx, Program) }

// exported runs program and exports its outputs.
func exported(ctx *pulumi.Context, program func(*pulumi.Context) (map[string]pulumi.Input, error)) error {
	outputs, err := program(ctx)
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(outputs) {
		ctx.Export(name, outputs[name])
	}
	return nil
}

// serviceTrust is the trust policy that lets an AWS service (ec2.amazonaws.com…) assume a role.
func serviceTrust(ctx *pulumi.Context, service string, opts ...pulumi.InvokeOption) (string, error) {
	doc, err := iam.GetPolicyDocument(ctx, &iam.GetPolicyDocumentArgs{Statements: []iam.GetPolicyDocumentStatement{{
		Actions:    []string{"sts:AssumeRole"},
		Principals: []iam.GetPolicyDocumentStatementPrincipal{{Type: "Service", Identifiers: []string{service}}},
	}}}, opts...)
	if err != nil {
		return "", err
	}
	return doc.Json, nil
}

// nonNil is the resources given that are set: a dependency a caller may leave out.
func nonNil(rs ...pulumi.Resource) []pulumi.Resource {
	var out []pulumi.Resource
	for _, r := range rs {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}
