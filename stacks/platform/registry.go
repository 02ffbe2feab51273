package platform

import (
	"encoding/json"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecr"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Registry is an ECR repository per service.
type Registry struct {
	pulumi.ResourceState

	RepositoryURLs  map[string]pulumi.StringOutput
	RepositoryNames map[string]pulumi.StringOutput
}

// RegistryArgs configures a Registry.
type RegistryArgs struct {
	Config   Config
	Services []string
}

// NewRegistry creates the repositories: scanned on push, immutable tags, KMS-encrypted, and
// pruned to the newest cfg.EcrKeepImages images.
func NewRegistry(ctx *pulumi.Context, name string, args RegistryArgs, opts ...pulumi.ResourceOption) (*Registry, error) {
	r := &Registry{RepositoryURLs: map[string]pulumi.StringOutput{}, RepositoryNames: map[string]pulumi.StringOutput{}}
	if err := ctx.RegisterComponentResource("shopmesh:registry:Registry", name, r, opts...); err != nil {
		return nil, err
	}
	cfg, parent := args.Config, pulumi.Parent(r)
	key, err := kms.NewKey(ctx, name, &kms.KeyArgs{
		Description:       pulumi.String("ECR image encryption for " + cfg.Name("registry")),
		EnableKeyRotation: pulumi.Bool(true),
		Tags:              cfg.Tags("ecr"),
	}, parent)
	if err != nil {
		return nil, err
	}
	lifecycle, err := lifecyclePolicy(cfg.EcrKeepImages)
	if err != nil {
		return nil, err
	}
	outputs := pulumi.Map{}
	for _, svc := range args.Services {
		repo, err := ecr.NewRepository(ctx, svc, &ecr.RepositoryArgs{
			// Repository names are unique per account and region: the stack is part of the name.
			Name:                       pulumi.String(RepositoryName(cfg, svc)),
			ImageTagMutability:         pulumi.String("IMMUTABLE"),
			ImageScanningConfiguration: &ecr.RepositoryImageScanningConfigurationArgs{ScanOnPush: pulumi.Bool(true)},
			EncryptionConfigurations: ecr.RepositoryEncryptionConfigurationArray{ecr.RepositoryEncryptionConfigurationArgs{
				EncryptionType: pulumi.String("KMS"), KmsKey: key.Arn,
			}},
			// Dev repositories may be deleted with their images; prod keeps them.
			ForceDelete: pulumi.Bool(!cfg.Prod()),
			Tags:        cfg.Tags("ecr-" + svc),
		}, parent)
		if err != nil {
			return nil, err
		}
		if _, err := ecr.NewLifecyclePolicy(ctx, svc, &ecr.LifecyclePolicyArgs{
			Repository: repo.Name, Policy: pulumi.String(lifecycle),
		}, parent); err != nil {
			return nil, err
		}
		r.RepositoryURLs[svc] = repo.RepositoryUrl
		r.RepositoryNames[svc] = repo.Name
		outputs[svc] = repo.RepositoryUrl
	}
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{"repositoryUrls": outputs}); err != nil {
		return nil, err
	}
	return r, nil
}

// RepositoryName is the ECR repository of a service in this stack: <project>/<stack>/<service>.
func RepositoryName(cfg Config, svc string) string { return cfg.Project + "/" + cfg.Stack + "/" + svc }

// lifecyclePolicy keeps the newest keep tagged images: releases, one multi-architecture image
// index each. Every manifest is an image to a rule of tagStatus any, the untagged per-platform
// manifests an index refers to included (ECR lifecycle policies count "1 image, signature, or
// image index" alike: aws/containers-roadmap#2613), so such a rule kept a third of the
// releases it said. A tagged rule needs a tag pattern ("Lifecycle policy properties": tagged
// requires tagPatternList or tagPrefixList); * matches every tag.
func lifecyclePolicy(keep int) (string, error) {
	type selection struct {
		TagStatus      string   `json:"tagStatus"`
		TagPatternList []string `json:"tagPatternList,omitempty"`
		CountType      string   `json:"countType"`
		CountNumber    int      `json:"countNumber"`
	}
	type rule struct {
		RulePriority int               `json:"rulePriority"`
		Description  string            `json:"description"`
		Selection    selection         `json:"selection"`
		Action       map[string]string `json:"action"`
	}
	b, err := json.Marshal(map[string][]rule{"rules": {{
		RulePriority: 1,
		Description:  "keep the newest tagged images (releases) only",
		Selection:    selection{TagStatus: "tagged", TagPatternList: []string{"*"}, CountType: "imageCountMoreThan", CountNumber: keep},
		Action:       map[string]string{"type": "expire"},
	}}})
	return string(b), err
}
