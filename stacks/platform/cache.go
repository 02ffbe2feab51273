package platform

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elasticache"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/shopmesh/shopmesh/services/gateway"
)

// CacheArgs configure the rate-limit store.
type CacheArgs struct {
	Config  Config
	Network *Network
	// ClientSecurityGroupID is the only source allowed to connect: the nodes' group.
	ClientSecurityGroupID pulumi.StringOutput
}

// Cache is the Valkey replication group every gateway replica keeps its rate-limit buckets in,
// so that a client's limit is one limit, however many replicas serve it.
type Cache struct {
	pulumi.ResourceState

	Address   pulumi.StringOutput // primary endpoint
	Port      int
	GroupID   string // the replication group ID: the "cache name" of an IAM token
	UserID    string // the gateway's ElastiCache user (IAM authentication)
	GroupArn  pulumi.StringOutput
	UserArn   pulumi.StringOutput
	KeyPrefix string // the only keys the gateway's user may touch
}

// CachePort is Valkey's port.
const CachePort = 6379

// NewCache creates the replication group with encryption in transit and at rest, in the private
// subnets, reachable from the cluster's nodes only, and one user that authenticates with IAM:
// there is no password to keep anywhere (ElastiCache guide, "Authenticating with IAM": Valkey
// 7.2 or later, TLS on, user ID equal to the user name in lower case).
func NewCache(ctx *pulumi.Context, name string, args CacheArgs, opts ...pulumi.ResourceOption) (*Cache, error) {
	cfg := args.Config
	c := &Cache{Port: CachePort, GroupID: cfg.Name("ratelimit"), UserID: cfg.Name("gateway"), KeyPrefix: gateway.LimiterKeyPrefix}
	if err := ctx.RegisterComponentResource("shopmesh:cache:Cache", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)

	subnets, err := elasticache.NewSubnetGroup(ctx, name, &elasticache.SubnetGroupArgs{
		Name:        pulumi.String(cfg.Name("cache")),
		Description: pulumi.String("private subnets of " + cfg.Name("vpc")),
		SubnetIds:   args.Network.PrivateSubnetIDs,
		Tags:        cfg.Tags("cache"),
	}, parent)
	if err != nil {
		return nil, err
	}
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		Name:        pulumi.String(cfg.Name("cache")),
		Description: pulumi.String("Valkey from the EKS nodes only"),
		VpcId:       args.Network.VpcID,
		Ingress: ec2.SecurityGroupIngressArray{ec2.SecurityGroupIngressArgs{
			Description:    pulumi.String("Valkey from the cluster security group"),
			Protocol:       pulumi.String("tcp"),
			FromPort:       pulumi.Int(CachePort),
			ToPort:         pulumi.Int(CachePort),
			SecurityGroups: pulumi.StringArray{args.ClientSecurityGroupID},
		}},
		Egress: ec2.SecurityGroupEgressArray{}, // the cache starts no connections
		Tags:   cfg.Tags("cache"),
	}, parent)
	if err != nil {
		return nil, err
	}
	key, err := kms.NewKey(ctx, name, &kms.KeyArgs{
		Description:       pulumi.String("ElastiCache encryption at rest for " + cfg.Name("ratelimit")),
		EnableKeyRotation: pulumi.Bool(true),
		Tags:              cfg.Tags("cache"),
	}, parent)
	if err != nil {
		return nil, err
	}
	// Only the gateway's user: a Valkey user group holds users with an authentication mechanism
	// (password or IAM) only (ElastiCache guide, "Role-Based Access Control"), so no password-less
	// default user can be in it. The user may run what the limiter runs (GCRA in a Lua script) on
	// its own keys: the gateway's own rule, which its tests apply to a real Redis.
	user, err := elasticache.NewUser(ctx, name+"-gateway", &elasticache.UserArgs{
		UserId:             pulumi.String(c.UserID),
		UserName:           pulumi.String(c.UserID),
		Engine:             pulumi.String("valkey"),
		AccessString:       pulumi.String(gateway.LimiterAccessString()),
		AuthenticationMode: &elasticache.UserAuthenticationModeArgs{Type: pulumi.String("iam")},
		Tags:               cfg.Tags("cache-gateway"),
	}, parent)
	if err != nil {
		return nil, err
	}
	group, err := elasticache.NewUserGroup(ctx, name, &elasticache.UserGroupArgs{
		UserGroupId: pulumi.String(cfg.Name("cache-users")),
		Engine:      pulumi.String("valkey"),
		UserIds:     pulumi.StringArray{user.UserId},
		Tags:        cfg.Tags("cache-users"),
	}, parent)
	if err != nil {
		return nil, err
	}
	// Prod: a replica in another zone with automatic failover; dev: one node. Buckets are
	// short-lived, so there are no snapshots.
	nodes := 1
	if cfg.Prod() {
		nodes = 2
	}
	rg, err := elasticache.NewReplicationGroup(ctx, name, &elasticache.ReplicationGroupArgs{
		ReplicationGroupId:       pulumi.String(c.GroupID),
		Description:              pulumi.String("shared rate limits of the " + cfg.Stack + " gateway"),
		Engine:                   pulumi.String("valkey"),
		EngineVersion:            pulumi.String("8.0"),
		NodeType:                 pulumi.String(cfg.CacheNodeType),
		NumCacheClusters:         pulumi.Int(nodes),
		AutomaticFailoverEnabled: pulumi.Bool(nodes > 1),
		MultiAzEnabled:           pulumi.Bool(nodes > 1),
		Port:                     pulumi.Int(CachePort),
		SubnetGroupName:          subnets.Name,
		SecurityGroupIds:         pulumi.StringArray{sg.ID()},
		AtRestEncryptionEnabled:  pulumi.Bool(true),
		KmsKeyId:                 key.Arn,
		TransitEncryptionEnabled: pulumi.Bool(true),
		TransitEncryptionMode:    pulumi.String("required"),
		UserGroupIds:             pulumi.StringArray{group.UserGroupId},
		SnapshotRetentionLimit:   pulumi.Int(0),
		AutoMinorVersionUpgrade:  pulumi.Bool(true),
		ApplyImmediately:         pulumi.Bool(!cfg.Prod()), // prod changes wait for the maintenance window
		Tags:                     cfg.Tags("ratelimit"),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Address, c.GroupArn, c.UserArn = rg.PrimaryEndpointAddress, rg.Arn, user.Arn
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{"address": c.Address, "groupArn": c.GroupArn, "userArn": c.UserArn}); err != nil {
		return nil, err
	}
	return c, nil
}
