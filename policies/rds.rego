# RDS: encryption, no public access, backups, and in prod Multi-AZ and deletion protection.
package shopmesh

import rego.v1

rds_instance := "aws:rds/instance:Instance"

# METADATA
# title: RDS storage is encrypted
# description: Data, backups and snapshots are encrypted at rest.
# custom:
#   id: SHOP-RDS-001
#   severity: high
#   remediation: Set storageEncrypted to true (and kmsKeyId to a customer-managed key).
deny_rds_encryption contains msg if {
	input.__type == rds_instance
	not truthy(object.get(input, "storageEncrypted", false))
	msg := sprintf("%s: storage is not encrypted", [input.__name])
}

# METADATA
# title: RDS is not publicly accessible
# description: The database is reachable only from inside the VPC.
# custom:
#   id: SHOP-RDS-002
#   severity: critical
#   remediation: Set publiclyAccessible to false.
deny_rds_public contains msg if {
	input.__type == rds_instance
	truthy(object.get(input, "publiclyAccessible", false))
	msg := sprintf("%s: the database is publicly accessible", [input.__name])
}

# METADATA
# title: RDS backups are kept
# description: Automated backups are on everywhere and kept at least 7 days in prod.
# custom:
#   id: SHOP-RDS-003
#   severity: high
#   remediation: Set backupRetentionPeriod to at least 1 (7 in prod).
deny_rds_backups contains msg if {
	input.__type == rds_instance
	days := object.get(input, "backupRetentionPeriod", 0)
	want := rds_min_backup_days
	days < want
	msg := sprintf("%s: backups kept %v days, want at least %v", [input.__name, days, want])
}

rds_min_backup_days := 7 if is_prod

rds_min_backup_days := 1 if not is_prod

# METADATA
# title: Production RDS is Multi-AZ
# description: A standby in another zone takes over when the primary's zone fails.
# custom:
#   id: SHOP-RDS-004
#   severity: high
#   remediation: Set multiAz to true in prod.
deny_rds_multi_az_prod contains msg if {
	input.__type == rds_instance
	is_prod
	not truthy(object.get(input, "multiAz", false))
	msg := sprintf("%s: the prod database is not Multi-AZ", [input.__name])
}

# METADATA
# title: Production RDS has deletion protection
# description: The prod database cannot be deleted by a mistaken update or destroy.
# custom:
#   id: SHOP-RDS-005
#   severity: high
#   remediation: Set deletionProtection to true in prod.
deny_rds_deletion_protection_prod contains msg if {
	input.__type == rds_instance
	is_prod
	not truthy(object.get(input, "deletionProtection", false))
	msg := sprintf("%s: the prod database has no deletion protection", [input.__name])
}

# METADATA
# title: The RDS master password is managed by Secrets Manager
# description: No master password in the program or its state; RDS generates and rotates it.
# custom:
#   id: SHOP-RDS-006
#   severity: high
#   remediation: Set manageMasterUserPassword to true and remove password.
deny_rds_managed_password contains msg if {
	input.__type == rds_instance
	not truthy(object.get(input, "manageMasterUserPassword", false))
	msg := sprintf("%s: the master password is not managed by Secrets Manager", [input.__name])
}

deny_rds_managed_password contains msg if {
	input.__type == rds_instance
	object.get(input, "password", "") != ""
	msg := sprintf("%s: a master password is set in the program", [input.__name])
}
