# ElastiCache: encryption in transit and at rest, authentication without a secret in state, and
# in prod a replica in another zone.
package shopmesh

import rego.v1

cache_group := "aws:elasticache/replicationGroup:ReplicationGroup"

cache_user := "aws:elasticache/user:User"

# METADATA
# title: ElastiCache encrypts in transit
# description: Clients must use TLS; "preferred" would still accept plain connections.
# custom:
#   id: SHOP-CACHE-001
#   severity: high
#   remediation: Set transitEncryptionEnabled to true and transitEncryptionMode to required (or leave the mode unset).
deny_cache_transit contains msg if {
	input.__type == cache_group
	not truthy(object.get(input, "transitEncryptionEnabled", false))
	msg := sprintf("%s: transit encryption is off", [input.__name])
}

deny_cache_transit contains msg if {
	input.__type == cache_group
	input.transitEncryptionMode == "preferred"
	msg := sprintf("%s: transitEncryptionMode is preferred, so plain connections are still accepted", [input.__name])
}

# METADATA
# title: ElastiCache encrypts at rest
# description: Data on the nodes' disks (swap, backups) is encrypted.
# custom:
#   id: SHOP-CACHE-002
#   severity: high
#   remediation: Set atRestEncryptionEnabled to true (and kmsKeyId to a customer-managed key).
deny_cache_at_rest contains msg if {
	input.__type == cache_group
	not truthy(object.get(input, "atRestEncryptionEnabled", false))
	msg := sprintf("%s: encryption at rest is off", [input.__name])
}

# METADATA
# title: ElastiCache clients authenticate as users, without a shared token
# description: Access goes through a user group (RBAC); an AUTH token would be a shared password in Pulumi state.
# custom:
#   id: SHOP-CACHE-003
#   severity: critical
#   remediation: Remove authToken and set userGroupIds to a user group of IAM-authenticated users.
deny_cache_auth contains msg if {
	input.__type == cache_group
	count(object.get(input, "userGroupIds", [])) == 0
	msg := sprintf("%s: no user group, so any client that reaches the port may use the cache", [input.__name])
}

deny_cache_auth contains msg if {
	input.__type == cache_group
	object.get(input, "authToken", "") != ""
	msg := sprintf("%s: an AUTH token is a shared password kept in Pulumi state", [input.__name])
}

# METADATA
# title: ElastiCache users authenticate with IAM
# description: A password user keeps its password in Pulumi state; IAM users sign a short-lived token with their role.
# custom:
#   id: SHOP-CACHE-004
#   severity: high
#   remediation: Set authenticationMode.type to iam, with userName equal to userId in lower case, and no passwords.
deny_cache_user_password contains msg if {
	input.__type == cache_user
	object.get(input, ["authenticationMode", "type"], "") != "iam"
	msg := sprintf("%s: the user does not authenticate with IAM", [input.__name])
}

deny_cache_user_password contains msg if {
	input.__type == cache_user
	count(object.get(input, "passwords", [])) > 0
	msg := sprintf("%s: the user has passwords, which land in Pulumi state", [input.__name])
}

# METADATA
# title: Production ElastiCache fails over to another zone
# description: A replica in another zone with automatic failover keeps the shared limits when a zone fails.
# custom:
#   id: SHOP-CACHE-005
#   severity: medium
#   remediation: In prod, set numCacheClusters to at least 2, automaticFailoverEnabled and multiAzEnabled to true.
deny_cache_multi_az_prod contains msg if {
	input.__type == cache_group
	is_prod
	not cache_multi_az
	msg := sprintf("%s: no replica in another zone with automatic failover", [input.__name])
}

cache_multi_az if {
	truthy(object.get(input, "automaticFailoverEnabled", false))
	truthy(object.get(input, "multiAzEnabled", false))
	object.get(input, "numCacheClusters", 1) >= 2
}
