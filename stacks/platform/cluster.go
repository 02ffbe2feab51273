package platform

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	awseks "github.com/pulumi/pulumi-aws/sdk/v6/go/aws/eks"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi-eks/sdk/v2/go/eks"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Cluster is EKS with a managed node group in the private subnets, and the Kubernetes
// provider every Kubernetes resource must be given explicitly.
type Cluster struct {
	pulumi.ResourceState

	Name pulumi.StringOutput
	// NodeGroup is what DaemonSet add-ons wait for.
	NodeGroup pulumi.Resource
	// Kubeconfig is what the Kubernetes provider uses: through the API tunnel on 127.0.0.1, or
	// the public endpoint, as kubeApiAccess says.
	Kubeconfig pulumi.StringOutput
	// Endpoint is the API server's URL (private unless endpointPublicAccess).
	Endpoint pulumi.StringOutput
	// Provider is made by NewProvider, and not at all while the workloads are held back
	// (workloads: false): nothing in the first stage of a first deploy may need the Kubernetes API.
	Provider        *kubernetes.Provider
	kubeconfig      pulumi.StringOutput
	OidcProviderArn pulumi.StringOutput
	OidcProviderURL pulumi.StringOutput
	// SecurityGroupID is the EKS cluster security group, which managed nodes carry.
	SecurityGroupID pulumi.StringOutput
}

// ClusterArgs configures a Cluster.
type ClusterArgs struct {
	Config  Config
	Name    string // the EKS cluster's name
	Network *Network
	// Admins are the principals given cluster admin through access entries, by a stable
	// resource name ("deploy", "admin-0"…).
	Admins map[string]pulumi.StringInput
	// Viewers are given read-only access (AmazonEKSViewPolicy): the pull-request preview role.
	Viewers map[string]pulumi.StringInput
	// LogGroup receives the control-plane logs; the cluster waits for it, or EKS would make
	// its own, without retention or key.
	LogGroup pulumi.Resource
}

// ClusterAdminPolicy is the EKS access policy with full cluster admin (system:masters);
// ClusterViewPolicy reads most objects, Secrets excepted.
const (
	ClusterAdminPolicy = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
	ClusterViewPolicy  = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
)

// ControlPlaneLogTypes are all the EKS control-plane logs; all are sent to CloudWatch.
var ControlPlaneLogTypes = []string{"api", "audit", "authenticator", "controllerManager", "scheduler"}

// NewCluster creates the EKS cluster (pulumi-eks), its secrets-encryption key and OIDC
// provider, and a managed node group whose instances require IMDSv2.
func NewCluster(ctx *pulumi.Context, name string, args ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	c := &Cluster{}
	if err := ctx.RegisterComponentResource("shopmesh:cluster:Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	cfg, parent := args.Config, pulumi.Parent(c)

	key, err := kms.NewKey(ctx, name+"-secrets", &kms.KeyArgs{
		Description:       pulumi.String("EKS secrets encryption for " + args.Name),
		EnableKeyRotation: pulumi.Bool(true),
		Tags:              cfg.Tags("eks-secrets"),
	}, parent)
	if err != nil {
		return nil, err
	}
	var logTypes, cidrs pulumi.StringArray
	for _, l := range ControlPlaneLogTypes {
		logTypes = append(logTypes, pulumi.String(l))
	}
	for _, cidr := range cfg.PublicAccessCidrs {
		cidrs = append(cidrs, pulumi.String(cidr))
	}
	clusterArgs := &eks.ClusterArgs{
		Name:                   pulumi.String(args.Name),
		Version:                pulumi.String(cfg.ClusterVersion),
		VpcId:                  args.Network.VpcID,
		PrivateSubnetIds:       args.Network.PrivateSubnetIDs,
		SkipDefaultNodeGroup:   pulumi.BoolRef(true),
		EnabledClusterLogTypes: logTypes,
		EncryptionConfigKeyArn: key.Arn,
		CreateOidcProvider:     pulumi.Bool(true),
		EndpointPrivateAccess:  pulumi.Bool(true),
		EndpointPublicAccess:   pulumi.Bool(cfg.EndpointPublicAccess),
		// pulumi-eks v2 otherwise applies its own VPC CNI manifest with kubectl against the new
		// cluster (its VpcCni resource), which needs the API from where pulumi up runs before
		// anything can reach it. EKS's default CNI stays, managed as an add-on below.
		UseDefaultVpcCni: pulumi.BoolRef(true),
		Tags:             cfg.Tags("eks"),
	}
	if cfg.EndpointPublicAccess {
		clusterArgs.PublicAccessCidrs = cidrs
	}
	// Access entries (API mode) instead of the aws-auth ConfigMap.
	authMode := eks.AuthenticationModeApi
	clusterArgs.AuthenticationMode = &authMode
	// pulumi-eks makes the cluster's service role itself: it gets the boundary too (resource
	// transforms reach the children of a packaged component).
	cluster, err := eks.NewCluster(ctx, name, clusterArgs, parent, pulumi.Transforms([]pulumi.ResourceTransform{withBoundary(cfg.BoundaryArn)}),
		pulumi.DependsOn(nonNil(args.LogGroup)))
	if err != nil {
		return nil, err
	}
	clusterName := cluster.EksCluster.Name()
	if _, err := awseks.NewAddon(ctx, name+"-vpc-cni", &awseks.AddonArgs{
		ClusterName: clusterName,
		AddonName:   pulumi.String("vpc-cni"),
		// Without the network policy agent, NetworkPolicies are accepted and not enforced (EKS
		// user guide, "Restrict pod network traffic with Kubernetes network policies"); the
		// add-on's schema takes the flag as a string.
		ConfigurationValues: pulumi.String(`{"enableNetworkPolicy":"true"}`),
		// Adopt the CNI EKS installed at creation instead of failing on its objects.
		ResolveConflictsOnCreate: pulumi.String("OVERWRITE"),
		ResolveConflictsOnUpdate: pulumi.String("OVERWRITE"),
		Tags:                     cfg.Tags("vpc-cni"),
	}, parent); err != nil {
		return nil, err
	}
	if err := accessEntries(ctx, name, cfg, clusterName, args.Admins, ClusterAdminPolicy, parent); err != nil {
		return nil, err
	}
	if err := accessEntries(ctx, name, cfg, clusterName, args.Viewers, ClusterViewPolicy, parent); err != nil {
		return nil, err
	}

	assume, err := serviceTrust(ctx, "ec2.amazonaws.com", parent)
	if err != nil {
		return nil, err
	}
	nodeRole, err := iam.NewRole(ctx, name+"-node", &iam.RoleArgs{
		AssumeRolePolicy:    pulumi.String(assume),
		PermissionsBoundary: pulumi.String(cfg.BoundaryArn),
		Tags:                cfg.Tags("eks-node"),
	}, parent)
	if err != nil {
		return nil, err
	}
	var nodePolicies []pulumi.Resource
	for i, policy := range []string{"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"} {
		a, err := iam.NewRolePolicyAttachment(ctx, name+"-node-"+strconv.Itoa(i), &iam.RolePolicyAttachmentArgs{
			Role: nodeRole.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/" + policy),
		}, parent)
		if err != nil {
			return nil, err
		}
		nodePolicies = append(nodePolicies, a)
	}
	template, err := ec2.NewLaunchTemplate(ctx, name+"-node", &ec2.LaunchTemplateArgs{
		Description: pulumi.String("EKS managed nodes for " + args.Name),
		// IMDSv2 only, and a hop limit of 1 so pods cannot reach the node's credentials; pods
		// get AWS access through IRSA instead.
		MetadataOptions: &ec2.LaunchTemplateMetadataOptionsArgs{
			HttpEndpoint:            pulumi.String("enabled"),
			HttpTokens:              pulumi.String("required"),
			HttpPutResponseHopLimit: pulumi.Int(1),
		},
		BlockDeviceMappings: ec2.LaunchTemplateBlockDeviceMappingArray{ec2.LaunchTemplateBlockDeviceMappingArgs{
			DeviceName: pulumi.String("/dev/xvda"),
			Ebs: &ec2.LaunchTemplateBlockDeviceMappingEbsArgs{
				VolumeSize: pulumi.Int(50), VolumeType: pulumi.String("gp3"), Encrypted: pulumi.String("true"),
			},
		}},
		TagSpecifications: ec2.LaunchTemplateTagSpecificationArray{ec2.LaunchTemplateTagSpecificationArgs{
			ResourceType: pulumi.String("instance"), Tags: cfg.Tags("eks-node"),
		}},
		Tags: cfg.Tags("eks-node"),
	}, parent)
	if err != nil {
		return nil, err
	}
	var instanceTypes pulumi.StringArray
	for _, t := range cfg.NodeInstanceTypes {
		instanceTypes = append(instanceTypes, pulumi.String(t))
	}
	// The aws provider's NodeGroup rather than pulumi-eks's component, so that the desired size
	// can be left to the Cluster Autoscaler: ignoreChanges on a component does not reach the
	// resources its provider creates. Managed nodes get their EC2_LINUX access entry from EKS.
	nodeOpts := []pulumi.ResourceOption{parent, pulumi.DependsOn(nodePolicies)}
	if cfg.Autoscaling {
		nodeOpts = append(nodeOpts, pulumi.IgnoreChanges([]string{"scalingConfig.desiredSize"}))
	}
	nodes, err := awseks.NewNodeGroup(ctx, name+"-nodes", &awseks.NodeGroupArgs{
		ClusterName:   clusterName,
		NodeRoleArn:   nodeRole.Arn,
		SubnetIds:     args.Network.PrivateSubnetIDs,
		InstanceTypes: instanceTypes,
		CapacityType:  pulumi.String("ON_DEMAND"),
		ScalingConfig: &awseks.NodeGroupScalingConfigArgs{
			MinSize: pulumi.Int(cfg.NodeMinSize), DesiredSize: pulumi.Int(cfg.NodeDesiredSize), MaxSize: pulumi.Int(cfg.NodeMaxSize),
		},
		LaunchTemplate: &awseks.NodeGroupLaunchTemplateArgs{
			Id:      template.ID(),
			Version: template.LatestVersion.ApplyT(func(v int) string { return strconv.Itoa(v) }).(pulumi.StringOutput),
		},
		Tags: cfg.Tags("eks-nodes"),
	}, nodeOpts...)
	if err != nil {
		return nil, err
	}
	// HPAs read pod CPU from the metrics API, which EKS does not serve without metrics-server.
	if _, err := awseks.NewAddon(ctx, name+"-metrics-server", &awseks.AddonArgs{
		ClusterName:              clusterName,
		AddonName:                pulumi.String("metrics-server"),
		ResolveConflictsOnCreate: pulumi.String("OVERWRITE"),
		ResolveConflictsOnUpdate: pulumi.String("OVERWRITE"),
		Tags:                     cfg.Tags("metrics-server"),
	}, parent, pulumi.DependsOn([]pulumi.Resource{nodes})); err != nil {
		return nil, err
	}

	kubeconfig := cluster.KubeconfigJson
	if cfg.KubeApiAccess == "tunnel" {
		kubeconfig = tunnelKubeconfig(cfg, cluster.EksCluster)
	}
	c.kubeconfig = kubeconfig
	c.Name = clusterName
	c.NodeGroup = nodes
	c.Endpoint = cluster.EksCluster.Endpoint()
	c.Kubeconfig = pulumi.ToSecret(kubeconfig).(pulumi.StringOutput)
	c.OidcProviderArn = cluster.Core.OidcProvider().Arn()
	c.OidcProviderURL = cluster.Core.OidcProvider().Url()
	c.SecurityGroupID = cluster.EksCluster.VpcConfig().ClusterSecurityGroupId().Elem()
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"name": c.Name, "oidcProviderArn": c.OidcProviderArn, "securityGroupId": c.SecurityGroupID,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// NewProvider creates the Kubernetes provider every Kubernetes resource is given. It depends on
// what carries its connection (the API tunnel), so that `pulumi destroy` deletes the Kubernetes
// resources before the way to reach them.
func (c *Cluster) NewProvider(ctx *pulumi.Context, via ...pulumi.Resource) (*kubernetes.Provider, error) {
	p, err := kubernetes.NewProvider(ctx, "cluster", &kubernetes.ProviderArgs{
		Kubeconfig:            c.kubeconfig,
		EnableServerSideApply: pulumi.Bool(true),
	}, pulumi.Parent(c), pulumi.DependsOn(via))
	if err != nil {
		return nil, err
	}
	c.Provider = p
	return p, nil
}

// accessEntries gives each principal the access policy, cluster-wide. The principal that creates the cluster
// is not among them: pulumi-eks v2 creates the cluster with bootstrapClusterCreatorAdminPermissions
// true (nodejs/eks/cluster/cluster.ts), so EKS already holds an entry for it, and a second one
// fails with ResourceInUseException (EKS API reference, CreateAccessEntry).
func accessEntries(ctx *pulumi.Context, name string, cfg Config, clusterName pulumi.StringOutput, admins map[string]pulumi.StringInput, policy string, parent pulumi.ResourceOrInvokeOption) error {
	keys := make([]string, 0, len(admins))
	for k := range admins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		entry, err := awseks.NewAccessEntry(ctx, name+"-"+k, &awseks.AccessEntryArgs{
			ClusterName:  clusterName,
			PrincipalArn: admins[k],
			Type:         pulumi.String("STANDARD"),
			Tags:         cfg.Tags("eks-access-" + k),
		}, parent)
		if err != nil {
			return err
		}
		if _, err := awseks.NewAccessPolicyAssociation(ctx, name+"-"+k, &awseks.AccessPolicyAssociationArgs{
			ClusterName:  clusterName,
			PrincipalArn: entry.PrincipalArn,
			PolicyArn:    pulumi.String(policy),
			AccessScope:  &awseks.AccessPolicyAssociationAccessScopeArgs{Type: pulumi.String("cluster")},
		}, parent); err != nil {
			return err
		}
	}
	return nil
}

// tunnelKubeconfig points at the API tunnel's local end (scripts/api-tunnel.sh) and checks the
// server certificate against the cluster's real host name, which the API server's certificate
// carries; tokens come from `aws eks get-token`, as in pulumi-eks's own kubeconfig.
func tunnelKubeconfig(cfg Config, cluster awseks.ClusterOutput) pulumi.StringOutput {
	return pulumi.All(cluster.Name(), cluster.Endpoint(), cluster.CertificateAuthority().Data()).ApplyT(func(v []any) (string, error) {
		name, endpoint := v[0].(string), v[1].(string)
		ca, _ := v[2].(*string)
		if ca == nil {
			ca = new(string)
		}
		host := strings.TrimPrefix(endpoint, "https://")
		kc := map[string]any{
			"apiVersion": "v1", "kind": "Config",
			"clusters": []any{map[string]any{"name": name, "cluster": map[string]any{
				"server": "https://127.0.0.1:" + strconv.Itoa(cfg.ApiTunnelPort), "tls-server-name": host, "certificate-authority-data": *ca,
			}}},
			"contexts":        []any{map[string]any{"name": name, "context": map[string]any{"cluster": name, "user": name}}},
			"current-context": name,
			"users": []any{map[string]any{"name": name, "user": map[string]any{"exec": map[string]any{
				"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
				"args": []any{"--region", cfg.Region, "eks", "get-token", "--cluster-name", name, "--output", "json"},
			}}}},
		}
		b, err := json.Marshal(kc)
		return string(b), err
	}).(pulumi.StringOutput)
}

// ServiceAccountRole is an IAM role that only the Kubernetes service account ns/sa of this cluster
// can assume (IRSA: the OIDC provider's sub and aud claims), with statements as its inline policy
// (both named name).
func (c *Cluster) ServiceAccountRole(ctx *pulumi.Context, name, ns, sa string, cfg Config, statements iam.GetPolicyDocumentStatementArray,
	parent pulumi.ResourceOrInvokeOption) (*iam.Role, error) {
	issuer := c.OidcProviderURL.ApplyT(func(u string) string { return strings.TrimPrefix(u, "https://") }).(pulumi.StringOutput)
	trust := iam.GetPolicyDocumentOutput(ctx, iam.GetPolicyDocumentOutputArgs{Statements: iam.GetPolicyDocumentStatementArray{
		iam.GetPolicyDocumentStatementArgs{
			Actions: pulumi.StringArray{pulumi.String("sts:AssumeRoleWithWebIdentity")},
			Principals: iam.GetPolicyDocumentStatementPrincipalArray{iam.GetPolicyDocumentStatementPrincipalArgs{
				Type: pulumi.String("Federated"), Identifiers: pulumi.StringArray{c.OidcProviderArn},
			}},
			Conditions: iam.GetPolicyDocumentStatementConditionArray{
				iam.GetPolicyDocumentStatementConditionArgs{Test: pulumi.String("StringEquals"), Variable: pulumi.Sprintf("%s:sub", issuer),
					Values: pulumi.StringArray{pulumi.String("system:serviceaccount:" + ns + ":" + sa)}},
				iam.GetPolicyDocumentStatementConditionArgs{Test: pulumi.String("StringEquals"), Variable: pulumi.Sprintf("%s:aud", issuer),
					Values: pulumi.StringArray{pulumi.String("sts.amazonaws.com")}},
			},
		},
	}}, parent)
	role, err := iam.NewRole(ctx, name, &iam.RoleArgs{AssumeRolePolicy: trust.Json(), PermissionsBoundary: pulumi.String(cfg.BoundaryArn), Tags: cfg.Tags(name)}, parent)
	if err != nil {
		return nil, err
	}
	if len(statements) == 0 { // the caller attaches managed policies
		return role, nil
	}
	permissions := iam.GetPolicyDocumentOutput(ctx, iam.GetPolicyDocumentOutputArgs{Statements: statements}, parent)
	if _, err := iam.NewRolePolicy(ctx, name, &iam.RolePolicyArgs{Role: role.ID(), Policy: permissions.Json()}, parent); err != nil {
		return nil, err
	}
	return role, nil
}

// withBoundary gives every IAM role the transformed resource creates the permissions boundary.
func withBoundary(arn string) pulumi.ResourceTransform {
	return func(_ context.Context, args *pulumi.ResourceTransformArgs) *pulumi.ResourceTransformResult {
		if args.Type != "aws:iam/role:Role" {
			return nil
		}
		args.Props["permissionsBoundary"] = pulumi.String(arn)
		return &pulumi.ResourceTransformResult{Props: args.Props, Opts: args.Opts}
	}
}
