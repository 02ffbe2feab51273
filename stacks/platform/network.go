package platform

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Network is the VPC: a public and a private subnet per AZ, an internet gateway, NAT
// gateway(s) and route tables.
type Network struct {
	pulumi.ResourceState

	VpcID            pulumi.StringOutput
	VpcCidr          string
	PublicSubnetIDs  pulumi.StringArrayOutput
	PrivateSubnetIDs pulumi.StringArrayOutput
	// LoadBalancerAddresses are the internal NLB's private addresses, one per private subnet,
	// each in an explicit subnet CIDR reservation: EC2 never hands them to a node or a pod, so a
	// NetworkPolicy can admit exactly the load balancer.
	LoadBalancerAddresses []string
	// Reservations hold LoadBalancerAddresses; the NLB must come after them.
	Reservations   []pulumi.Resource
	privateSubnets []*ec2.Subnet
}

// NetworkArgs configures a Network.
type NetworkArgs struct {
	Config      Config
	ClusterName string // subnets are tagged for this EKS cluster's load balancers
}

// NewNetwork creates the VPC across cfg.AzCount zones.
func NewNetwork(ctx *pulumi.Context, name string, args NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	n := &Network{VpcCidr: args.Config.VpcCidr}
	if err := ctx.RegisterComponentResource("shopmesh:network:Network", name, n, opts...); err != nil {
		return nil, err
	}
	cfg, parent := args.Config, pulumi.Parent(n)

	azs, err := aws.GetAvailabilityZones(ctx, &aws.GetAvailabilityZonesArgs{State: pulumi.StringRef("available")}, pulumi.Parent(n))
	if err != nil {
		return nil, fmt.Errorf("look up availability zones: %w", err)
	}
	if len(azs.Names) < cfg.AzCount {
		return nil, fmt.Errorf("azCount is %d but %s has %d available zones", cfg.AzCount, cfg.Region, len(azs.Names))
	}
	blocks, err := subnetBlocks(cfg.VpcCidr, cfg.AzCount)
	if err != nil {
		return nil, err
	}

	vpc, err := ec2.NewVpc(ctx, name, &ec2.VpcArgs{
		CidrBlock:          pulumi.String(cfg.VpcCidr),
		EnableDnsHostnames: pulumi.Bool(true), // EKS and RDS endpoints resolve through VPC DNS
		EnableDnsSupport:   pulumi.Bool(true),
		Tags:               cfg.Tags("vpc"),
	}, parent)
	if err != nil {
		return nil, err
	}
	igw, err := ec2.NewInternetGateway(ctx, name, &ec2.InternetGatewayArgs{VpcId: vpc.ID(), Tags: cfg.Tags("igw")}, parent)
	if err != nil {
		return nil, err
	}
	publicRT, err := ec2.NewRouteTable(ctx, name+"-public", &ec2.RouteTableArgs{
		VpcId:  vpc.ID(),
		Routes: ec2.RouteTableRouteArray{ec2.RouteTableRouteArgs{CidrBlock: pulumi.String("0.0.0.0/0"), GatewayId: igw.ID()}},
		Tags:   cfg.Tags("public"),
	}, parent)
	if err != nil {
		return nil, err
	}

	clusterTag := "kubernetes.io/cluster/" + args.ClusterName
	var public, private pulumi.StringArray
	var nats []*ec2.NatGateway
	for i := 0; i < cfg.AzCount; i++ {
		az := azs.Names[i]
		pubTags := cfg.Tags("public-" + az)
		pubTags["kubernetes.io/role/elb"], pubTags[clusterTag] = pulumi.String("1"), pulumi.String("shared")
		pub, err := ec2.NewSubnet(ctx, fmt.Sprintf("%s-public-%d", name, i), &ec2.SubnetArgs{
			VpcId:            vpc.ID(),
			CidrBlock:        pulumi.String(blocks.public[i]),
			AvailabilityZone: pulumi.String(az),
			// Nothing we run gets a public IP; the NAT gateways use Elastic IPs.
			MapPublicIpOnLaunch: pulumi.Bool(false),
			Tags:                pubTags,
		}, parent)
		if err != nil {
			return nil, err
		}
		if _, err := ec2.NewRouteTableAssociation(ctx, fmt.Sprintf("%s-public-%d", name, i), &ec2.RouteTableAssociationArgs{
			SubnetId: pub.ID(), RouteTableId: publicRT.ID(),
		}, parent); err != nil {
			return nil, err
		}
		public = append(public, pub.ID())

		// One NAT gateway per AZ survives the loss of a zone; dev shares one to save cost.
		if cfg.NatPerAz || i == 0 {
			eip, err := ec2.NewEip(ctx, fmt.Sprintf("%s-nat-%d", name, i), &ec2.EipArgs{Domain: pulumi.String("vpc"), Tags: cfg.Tags("nat-" + az)}, parent)
			if err != nil {
				return nil, err
			}
			nat, err := ec2.NewNatGateway(ctx, fmt.Sprintf("%s-%d", name, i), &ec2.NatGatewayArgs{
				AllocationId: eip.ID(), SubnetId: pub.ID(), Tags: cfg.Tags("nat-" + az),
			}, parent, pulumi.DependsOn([]pulumi.Resource{igw}))
			if err != nil {
				return nil, err
			}
			nats = append(nats, nat)
		}

		privTags := cfg.Tags("private-" + az)
		privTags["kubernetes.io/role/internal-elb"], privTags[clusterTag] = pulumi.String("1"), pulumi.String("shared")
		priv, err := ec2.NewSubnet(ctx, fmt.Sprintf("%s-private-%d", name, i), &ec2.SubnetArgs{
			VpcId:               vpc.ID(),
			CidrBlock:           pulumi.String(blocks.private[i]),
			AvailabilityZone:    pulumi.String(az),
			MapPublicIpOnLaunch: pulumi.Bool(false),
			Tags:                privTags,
		}, parent)
		if err != nil {
			return nil, err
		}
		nat := nats[len(nats)-1]
		rt, err := ec2.NewRouteTable(ctx, fmt.Sprintf("%s-private-%d", name, i), &ec2.RouteTableArgs{
			VpcId:  vpc.ID(),
			Routes: ec2.RouteTableRouteArray{ec2.RouteTableRouteArgs{CidrBlock: pulumi.String("0.0.0.0/0"), NatGatewayId: nat.ID()}},
			Tags:   cfg.Tags("private-" + az),
		}, parent)
		if err != nil {
			return nil, err
		}
		if _, err := ec2.NewRouteTableAssociation(ctx, fmt.Sprintf("%s-private-%d", name, i), &ec2.RouteTableAssociationArgs{
			SubnetId: priv.ID(), RouteTableId: rt.ID(),
		}, parent); err != nil {
			return nil, err
		}
		private = append(private, priv.ID())
		n.privateSubnets = append(n.privateSubnets, priv)
		reserved, address := loadBalancerReservation(blocks.private[i])
		res, err := ec2.NewSubnetCidrReservation(ctx, fmt.Sprintf("%s-private-%d-nlb", name, i), &ec2.SubnetCidrReservationArgs{
			SubnetId:        priv.ID(),
			CidrBlock:       pulumi.String(reserved),
			ReservationType: pulumi.String("explicit"), // "You assign the reserved IP addresses" (EC2 API, CreateSubnetCidrReservation)
			Description:     pulumi.String("internal NLB address; never assigned to nodes or pods"),
		}, parent)
		if err != nil {
			return nil, err
		}
		n.Reservations = append(n.Reservations, res)
		n.LoadBalancerAddresses = append(n.LoadBalancerAddresses, address)
	}

	n.VpcID = vpc.ID().ToStringOutput()
	n.PublicSubnetIDs = public.ToStringArrayOutput()
	n.PrivateSubnetIDs = private.ToStringArrayOutput()
	if err := ctx.RegisterResourceOutputs(n, pulumi.Map{
		"vpcId": n.VpcID, "publicSubnetIds": n.PublicSubnetIDs, "privateSubnetIds": n.PrivateSubnetIDs,
	}); err != nil {
		return nil, err
	}
	return n, nil
}

type blocks struct{ public, private []string }

// subnetBlocks splits the VPC into 16 equal blocks: public subnets take the first, private
// subnets start at the ninth, so either side can grow to eight zones without renumbering.
func subnetBlocks(vpcCidr string, azs int) (blocks, error) {
	p, err := netip.ParsePrefix(vpcCidr)
	if err != nil {
		return blocks{}, fmt.Errorf("vpcCidr: %w", err)
	}
	p = p.Masked()
	bits := p.Bits() + 4
	step := uint32(1) << (32 - bits)
	base := p.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	block := func(i int) string {
		v := start + uint32(i)*step
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits).String()
	}
	var b blocks
	for i := 0; i < azs; i++ {
		b.public = append(b.public, block(i))
		b.private = append(b.private, block(8+i))
	}
	return b, nil
}

// loadBalancerReservation is the second-to-last /28 of a private subnet (the last holds the
// address AWS keeps for itself) and the load balancer's address in it.
func loadBalancerReservation(subnet string) (reserved, address string) {
	p := netip.MustParsePrefix(subnet).Masked()
	a := p.Addr().As4()
	size := uint32(1) << (32 - p.Bits())
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	start := base + size - 32
	ip := func(v uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return netip.PrefixFrom(ip(start), 28).String(), ip(start + 4).String()
}

// PrivateSubnet returns the i-th private subnet.
func (n *Network) PrivateSubnet(i int) *ec2.Subnet { return n.privateSubnets[i] }
