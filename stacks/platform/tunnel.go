package platform

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ApiTunnel is how `pulumi up`, CI and operators reach a cluster whose API endpoint is private:
// a small instance in a private subnet with the SSM agent and no inbound port, through which
// `aws ssm start-session --document-name AWS-StartPortForwardingSessionToRemoteHost` forwards a
// local port to the endpoint (scripts/api-tunnel.sh). It works from any machine with AWS
// credentials and the Session Manager plugin, GitHub-hosted runners included, so no operator
// address has to be known in advance. The instance holds no Kubernetes rights: every request
// carries the caller's own token, checked against the cluster's access entries.
type ApiTunnel struct {
	pulumi.ResourceState

	InstanceID pulumi.StringOutput
	// Instance carries the tunnel: what the Kubernetes provider must outlive.
	Instance *ec2.Instance
}

// ApiTunnelArgs configures an ApiTunnel.
type ApiTunnelArgs struct {
	Config  Config
	Network *Network
	// ClusterSecurityGroupID is the group on the API endpoint's network interfaces; it admits the
	// tunnel instance on 443.
	ClusterSecurityGroupID pulumi.StringOutput
}

// tunnelAmiParameter is AWS's public SSM parameter for the newest Amazon Linux 2023 AMI, which
// ships the SSM agent.
const tunnelAmiParameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"

// NewApiTunnel creates the tunnel instance, its role (SSM only) and its security group.
func NewApiTunnel(ctx *pulumi.Context, name string, args ApiTunnelArgs, opts ...pulumi.ResourceOption) (*ApiTunnel, error) {
	t := &ApiTunnel{}
	if err := ctx.RegisterComponentResource("shopmesh:access:ApiTunnel", name, t, opts...); err != nil {
		return nil, err
	}
	cfg, parent := args.Config, pulumi.Parent(t)

	assume, err := serviceTrust(ctx, "ec2.amazonaws.com", parent)
	if err != nil {
		return nil, err
	}
	role, err := iam.NewRole(ctx, name, &iam.RoleArgs{AssumeRolePolicy: pulumi.String(assume), PermissionsBoundary: pulumi.String(cfg.BoundaryArn),
		Tags: cfg.Tags("api-tunnel")}, parent)
	if err != nil {
		return nil, err
	}
	if _, err := iam.NewRolePolicyAttachment(ctx, name, &iam.RolePolicyAttachmentArgs{
		Role: role.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"),
	}, parent); err != nil {
		return nil, err
	}
	profile, err := iam.NewInstanceProfile(ctx, name, &iam.InstanceProfileArgs{Role: role.Name, Tags: cfg.Tags("api-tunnel")}, parent)
	if err != nil {
		return nil, err
	}
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		Description: pulumi.String("SSM port forwarding to the EKS API; no inbound"),
		VpcId:       args.Network.VpcID,
		// HTTPS out: to the SSM endpoints (through NAT) and to the API endpoint.
		Egress: ec2.SecurityGroupEgressArray{ec2.SecurityGroupEgressArgs{
			Description: pulumi.String("HTTPS to SSM and the EKS API"), Protocol: pulumi.String("tcp"),
			FromPort: pulumi.Int(443), ToPort: pulumi.Int(443), CidrBlocks: pulumi.StringArray{pulumi.String("0.0.0.0/0")},
		}},
		Tags: cfg.Tags("api-tunnel"),
	}, parent)
	if err != nil {
		return nil, err
	}
	if _, err := ec2.NewSecurityGroupRule(ctx, name+"-to-api", &ec2.SecurityGroupRuleArgs{
		Type:                  pulumi.String("ingress"),
		Description:           pulumi.String("API tunnel to the EKS API"),
		SecurityGroupId:       args.ClusterSecurityGroupID,
		Protocol:              pulumi.String("tcp"),
		FromPort:              pulumi.Int(443),
		ToPort:                pulumi.Int(443),
		SourceSecurityGroupId: sg.ID(),
	}, parent); err != nil {
		return nil, err
	}
	ami := ssm.LookupParameterOutput(ctx, ssm.LookupParameterOutputArgs{Name: pulumi.String(tunnelAmiParameter)}, parent).Value()
	instance, err := ec2.NewInstance(ctx, name, &ec2.InstanceArgs{
		Ami:                      ami,
		InstanceType:             pulumi.String("t4g.nano"),
		SubnetId:                 args.Network.PrivateSubnetIDs.Index(pulumi.Int(0)),
		AssociatePublicIpAddress: pulumi.Bool(false),
		IamInstanceProfile:       profile.Name,
		VpcSecurityGroupIds:      pulumi.StringArray{sg.ID()},
		MetadataOptions: &ec2.InstanceMetadataOptionsArgs{
			HttpEndpoint: pulumi.String("enabled"), HttpTokens: pulumi.String("required"), HttpPutResponseHopLimit: pulumi.Int(1),
		},
		RootBlockDevice: &ec2.InstanceRootBlockDeviceArgs{Encrypted: pulumi.Bool(true), VolumeType: pulumi.String("gp3")},
		Tags:            cfg.Tags("api-tunnel"),
		VolumeTags:      cfg.Tags("api-tunnel"),
	}, parent,
		// A new AMI is published every few weeks; following it would replace the instance (and
		// cut open tunnels) on an unrelated deploy. Replace it deliberately with `pulumi up --replace`.
		pulumi.IgnoreChanges([]string{"ami"}))
	if err != nil {
		return nil, err
	}
	t.Instance, t.InstanceID = instance, instance.ID().ToStringOutput()
	if err := ctx.RegisterResourceOutputs(t, pulumi.Map{"instanceId": t.InstanceID}); err != nil {
		return nil, err
	}
	return t, nil
}
