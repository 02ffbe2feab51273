package platform

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/rds"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Database is RDS PostgreSQL in the private subnets, reachable only from the cluster's nodes,
// with its master password kept by Secrets Manager.
type Database struct {
	pulumi.ResourceState

	Address   pulumi.StringOutput
	Port      pulumi.IntOutput
	Name      string
	SecretArn pulumi.StringOutput // the master user secret RDS manages
}

// DatabaseArgs configures a Database.
type DatabaseArgs struct {
	Config  Config
	Network *Network
	// ClientSecurityGroupID is the only source allowed to connect: the nodes' group.
	ClientSecurityGroupID pulumi.StringOutput
	// LogGroup receives the PostgreSQL logs; the instance waits for it.
	LogGroup pulumi.Resource
}

// DatabaseName is the PostgreSQL database the services share, each in its own schema.
const DatabaseName = "shopmesh"

// NewDatabase creates the instance, its subnet group, security group and encryption key.
func NewDatabase(ctx *pulumi.Context, name string, args DatabaseArgs, opts ...pulumi.ResourceOption) (*Database, error) {
	d := &Database{Name: DatabaseName}
	if err := ctx.RegisterComponentResource("shopmesh:database:Database", name, d, opts...); err != nil {
		return nil, err
	}
	cfg, parent := args.Config, pulumi.Parent(d)

	subnets, err := rds.NewSubnetGroup(ctx, name, &rds.SubnetGroupArgs{
		Name:        pulumi.String(cfg.Name("db")),
		Description: pulumi.String("private subnets of " + cfg.Name("vpc")),
		SubnetIds:   args.Network.PrivateSubnetIDs,
		Tags:        cfg.Tags("db"),
	}, parent)
	if err != nil {
		return nil, err
	}
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		Name:        pulumi.String(cfg.Name("db")),
		Description: pulumi.String("PostgreSQL from the EKS nodes only"),
		VpcId:       args.Network.VpcID,
		Ingress: ec2.SecurityGroupIngressArray{ec2.SecurityGroupIngressArgs{
			Description:    pulumi.String("PostgreSQL from the cluster security group"),
			Protocol:       pulumi.String("tcp"),
			FromPort:       pulumi.Int(5432),
			ToPort:         pulumi.Int(5432),
			SecurityGroups: pulumi.StringArray{args.ClientSecurityGroupID},
		}},
		// The database starts no connections.
		Egress: ec2.SecurityGroupEgressArray{},
		Tags:   cfg.Tags("db"),
	}, parent)
	if err != nil {
		return nil, err
	}
	key, err := kms.NewKey(ctx, name, &kms.KeyArgs{
		Description:       pulumi.String("RDS storage encryption for " + cfg.Name("db")),
		EnableKeyRotation: pulumi.Bool(true),
		Tags:              cfg.Tags("db"),
	}, parent)
	if err != nil {
		return nil, err
	}
	instance, err := rds.NewInstance(ctx, name, &rds.InstanceArgs{
		Identifier:               pulumi.String(cfg.Name("postgres")),
		Engine:                   pulumi.String("postgres"),
		EngineVersion:            pulumi.String("17"),
		InstanceClass:            pulumi.String(cfg.DbInstanceClass),
		AllocatedStorage:         pulumi.Int(cfg.DbAllocatedStorage),
		MaxAllocatedStorage:      pulumi.Int(cfg.DbAllocatedStorage * 4),
		StorageType:              pulumi.String("gp3"),
		StorageEncrypted:         pulumi.Bool(true),
		KmsKeyId:                 key.Arn,
		DbName:                   pulumi.String(DatabaseName),
		Username:                 pulumi.String("shopmesh"),
		ManageMasterUserPassword: pulumi.Bool(true), // the password lives in Secrets Manager, never in state
		DbSubnetGroupName:        subnets.Name,
		VpcSecurityGroupIds:      pulumi.StringArray{sg.ID()},
		PubliclyAccessible:       pulumi.Bool(false),
		MultiAz:                  pulumi.Bool(cfg.DbMultiAz),
		DeletionProtection:       pulumi.Bool(cfg.DbDeletionProtection),
		BackupRetentionPeriod:    pulumi.Int(cfg.DbBackupRetentionDays),
		CopyTagsToSnapshot:       pulumi.Bool(true),
		// Prod keeps a final snapshot when the instance is deleted; dev does not.
		SkipFinalSnapshot:                pulumi.Bool(!cfg.Prod()),
		FinalSnapshotIdentifier:          finalSnapshot(cfg),
		AutoMinorVersionUpgrade:          pulumi.Bool(true),
		EnabledCloudwatchLogsExports:     pulumi.StringArray{pulumi.String("postgresql")},
		PerformanceInsightsEnabled:       pulumi.Bool(cfg.Prod()),
		IamDatabaseAuthenticationEnabled: pulumi.Bool(true),
		Tags:                             cfg.Tags("postgres"),
	}, parent, pulumi.DependsOn(nonNil(args.LogGroup)))
	if err != nil {
		return nil, err
	}
	d.Address = instance.Address
	d.Port = instance.Port
	d.SecretArn = instance.MasterUserSecrets.Index(pulumi.Int(0)).SecretArn().Elem()
	if err := ctx.RegisterResourceOutputs(d, pulumi.Map{"address": d.Address, "port": d.Port, "secretArn": d.SecretArn}); err != nil {
		return nil, err
	}
	return d, nil
}

func finalSnapshot(cfg Config) pulumi.StringPtrInput {
	if !cfg.Prod() {
		return nil
	}
	return pulumi.String(cfg.Name("postgres-final"))
}
