# KMS: customer-managed keys rotate.
package shopmesh

import rego.v1

# METADATA
# title: KMS keys rotate yearly
# description: Automatic rotation of customer-managed keys limits what one key protects.
# custom:
#   id: SHOP-KMS-001
#   severity: medium
#   remediation: Set enableKeyRotation to true.
deny_kms_rotation contains msg if {
	input.__type == "aws:kms/key:Key"
	object.get(input, "customerMasterKeySpec", object.get(input, "keySpec", "SYMMETRIC_DEFAULT")) == "SYMMETRIC_DEFAULT"
	not truthy(object.get(input, "enableKeyRotation", false))
	msg := sprintf("%s: key rotation is off", [input.__name])
}
