# Container registry: scanning, immutable tags, KMS encryption, lifecycle policies.
package shopmesh

import rego.v1

ecr_repository := "aws:ecr/repository:Repository"

# METADATA
# title: ECR scans images on push
# description: Every pushed image is scanned for known vulnerabilities.
# custom:
#   id: SHOP-ECR-001
#   severity: medium
#   remediation: Set imageScanningConfiguration.scanOnPush to true.
deny_ecr_scan_on_push contains msg if {
	input.__type == ecr_repository
	not truthy(object.get(object.get(input, "imageScanningConfiguration", {}), "scanOnPush", false))
	msg := sprintf("%s: images are not scanned on push", [input.__name])
}

# METADATA
# title: ECR tags are immutable
# description: A tag names one image forever, so a deployment cannot silently change.
# custom:
#   id: SHOP-ECR-002
#   severity: high
#   remediation: Set imageTagMutability to "IMMUTABLE".
deny_ecr_immutable_tags contains msg if {
	input.__type == ecr_repository
	object.get(input, "imageTagMutability", "MUTABLE") != "IMMUTABLE"
	msg := sprintf("%s: image tags are mutable", [input.__name])
}

# METADATA
# title: ECR repositories are encrypted with KMS
# description: Images are encrypted with a customer-managed key rather than the AES-256 default.
# custom:
#   id: SHOP-ECR-003
#   severity: medium
#   remediation: 'Set encryptionConfigurations to [{encryptionType: "KMS", kmsKey: <key ARN>}].'
deny_ecr_kms_encryption contains msg if {
	input.__type == ecr_repository
	not ecr_kms
	msg := sprintf("%s: not encrypted with a KMS key", [input.__name])
}

ecr_kms if {
	some c in input.encryptionConfigurations
	c.encryptionType == "KMS"
}

# METADATA
# title: Every ECR repository has a lifecycle policy
# description: Old images expire, which bounds storage cost and the attack surface of stale images.
# custom:
#   id: SHOP-ECR-004
#   severity: low
#   remediation: Add an aws.ecr.LifecyclePolicy for the repository.
stack_deny_ecr_lifecycle_policy contains msg if {
	some repo in input.resources
	repo.__type == ecr_repository
	not has_lifecycle_policy(repo)
	msg := sprintf("%s: repository %s has no lifecycle policy", [repo.__name, object.get(repo, "name", repo.__name)])
}

has_lifecycle_policy(repo) if {
	some p in input.resources
	p.__type == "aws:ecr/lifecyclePolicy:LifecyclePolicy"
	p.repository == repo.name
}

has_lifecycle_policy(repo) if {
	some p in input.resources
	p.__type == "aws:ecr/lifecyclePolicy:LifecyclePolicy"
	some ref in p.propertyDependencies.repository
	ref == repo.__urn
}
