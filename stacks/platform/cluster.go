package platform

import (
	"strconv"

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

	Name            pulumi.StringOutput
	Kubeconfig      pulumi.StringOutput
	Provider        *kubernetes.Provider
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
}

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
		Tags:                   cfg.Tags("eks"),
	}
	if cfg.EndpointPublicAccess {
		clusterArgs.PublicAccessCidrs = cidrs
	}
	// Access entries (API mode) instead of the aws-auth ConfigMap.
	authMode := eks.AuthenticationModeApi
	clusterArgs.AuthenticationMode = &authMode
	cluster, err := eks.NewCluster(ctx, name, clusterArgs, parent)
	if err != nil {
		return nil, err
	}

	assume, err := iam.GetPolicyDocument(ctx, &iam.GetPolicyDocumentArgs{Statements: []iam.GetPolicyDocumentStatement{{
		Actions:    []string{"sts:AssumeRole"},
		Principals: []iam.GetPolicyDocumentStatementPrincipal{{Type: "Service", Identifiers: []string{"ec2.amazonaws.com"}}},
	}}}, parent)
	if err != nil {
		return nil, err
	}
	nodeRole, err := iam.NewRole(ctx, name+"-node", &iam.RoleArgs{
		AssumeRolePolicy: pulumi.String(assume.Json),
		Tags:             cfg.Tags("eks-node"),
	}, parent)
	if err != nil {
		return nil, err
	}
	for i, policy := range []string{"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"} {
		if _, err := iam.NewRolePolicyAttachment(ctx, name+"-node-"+strconv.Itoa(i), &iam.RolePolicyAttachmentArgs{
			Role: nodeRole.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/" + policy),
		}, parent); err != nil {
			return nil, err
		}
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
	if _, err := eks.NewManagedNodeGroup(ctx, name+"-nodes", &eks.ManagedNodeGroupArgs{
		Cluster:       cluster,
		NodeRole:      nodeRole,
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
	}, parent); err != nil {
		return nil, err
	}

	provider, err := kubernetes.NewProvider(ctx, name, &kubernetes.ProviderArgs{
		Kubeconfig:            cluster.KubeconfigJson,
		EnableServerSideApply: pulumi.Bool(true),
	}, parent)
	if err != nil {
		return nil, err
	}

	c.Name = cluster.EksCluster.Name()
	c.Kubeconfig = pulumi.ToSecret(cluster.KubeconfigJson).(pulumi.StringOutput)
	c.Provider = provider
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
