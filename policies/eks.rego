# EKS control plane: logs, endpoint access, secrets encryption, OIDC (IRSA).
package shopmesh

import rego.v1

required_log_types := {"api", "audit", "authenticator"}

# Endpoint settings with AWS's defaults (public from anywhere, no private endpoint) when unset.
eks_defaults := {"endpointPublicAccess": true, "endpointPrivateAccess": false, "publicAccessCidrs": ["0.0.0.0/0"]}

eks_setting(key) := object.get(input, key, eks_defaults[key]) if input.__type == eks_component

eks_setting(key) := object.get(object.get(input, "vpcConfig", {}), key, eks_defaults[key]) if input.__type == eks_cluster

# METADATA
# title: EKS control-plane logs are enabled
# description: The API server, audit and authenticator logs go to CloudWatch, so access to the cluster can be investigated.
# custom:
#   id: SHOP-EKS-001
#   severity: high
#   remediation: Set enabledClusterLogTypes to at least ["api", "audit", "authenticator"].
deny_eks_control_plane_logs contains msg if {
	input.__type in {eks_component, eks_cluster}
	missing := required_log_types - {t | some t in object.get(input, "enabledClusterLogTypes", [])}
	count(missing) > 0
	msg := sprintf("%s: control-plane log types %v are not enabled", [input.__name, sort(missing)])
}

# METADATA
# title: Production EKS API endpoint is private
# description: In prod the Kubernetes API is reachable only from inside the VPC.
# custom:
#   id: SHOP-EKS-002
#   severity: critical
#   remediation: Set endpointPublicAccess to false (reach the API through the VPC, a bastion or SSM).
deny_eks_public_endpoint_prod contains msg if {
	input.__type in {eks_component, eks_cluster}
	is_prod
	eks_setting("endpointPublicAccess") != false
	msg := sprintf("%s: the prod cluster's API endpoint is public", [input.__name])
}

# METADATA
# title: A public EKS endpoint is limited to known networks
# description: Outside prod the API may be public, but only from listed CIDRs, never from anywhere.
# custom:
#   id: SHOP-EKS-003
#   severity: high
#   remediation: Set publicAccessCidrs to the office or VPN ranges, or make the endpoint private.
deny_eks_public_endpoint_open contains msg if {
	input.__type in {eks_component, eks_cluster}
	eks_setting("endpointPublicAccess") == true
	some cidr in eks_setting("publicAccessCidrs")
	anywhere(cidr)
	msg := sprintf("%s: the public API endpoint is open to the whole internet", [input.__name])
}

# METADATA
# title: The EKS private endpoint is on
# description: Nodes and in-VPC tooling reach the API without leaving the VPC.
# custom:
#   id: SHOP-EKS-004
#   severity: medium
#   remediation: Set endpointPrivateAccess to true.
deny_eks_private_endpoint contains msg if {
	input.__type in {eks_component, eks_cluster}
	eks_setting("endpointPrivateAccess") != true
	msg := sprintf("%s: the private API endpoint is off", [input.__name])
}

# METADATA
# title: Kubernetes secrets are encrypted with KMS
# description: Envelope encryption of Secrets in etcd with a customer-managed key.
# custom:
#   id: SHOP-EKS-005
#   severity: high
#   remediation: Set encryptionConfigKeyArn (pulumi-eks) or encryptionConfig with resources ["secrets"] and a KMS key.
deny_eks_secrets_encryption contains msg if {
	input.__type == eks_component
	object.get(input, "encryptionConfigKeyArn", "") == ""
	msg := sprintf("%s: secrets are not encrypted with a KMS key", [input.__name])
}

deny_eks_secrets_encryption contains msg if {
	input.__type == eks_cluster
	not eks_secrets_encrypted
	msg := sprintf("%s: secrets are not encrypted with a KMS key", [input.__name])
}

eks_secrets_encrypted if {
	"secrets" in input.encryptionConfig.resources
	input.encryptionConfig.provider.keyArn != ""
}

# METADATA
# title: The cluster has an IAM OIDC provider
# description: Pods get AWS permissions through IAM roles for service accounts, not the node role.
# custom:
#   id: SHOP-EKS-006
#   severity: high
#   remediation: Set createOidcProvider to true on the eks.Cluster, or create an aws.iam.OpenIdConnectProvider for the cluster's issuer.
stack_deny_eks_oidc_provider contains msg if {
	some c in input.resources
	c.__type in {eks_component, eks_cluster}
	not oidc_provider_present
	not c.createOidcProvider == true
	msg := sprintf("%s: no IAM OIDC provider for the cluster (IRSA)", [c.__name])
}

# Any OIDC provider but GitHub Actions' (the deploy role's) can be the cluster's: in a real
# preview the cluster's issuer URL is not known yet.
oidc_provider_present if {
	some r in input.resources
	r.__type == "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
	not contains(object.get(r, "url", ""), "token.actions.githubusercontent.com")
}
