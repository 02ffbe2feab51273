# CloudWatch: alarms tell somebody, and logs are kept for a known time and encrypted.
package shopmesh

import rego.v1

metric_alarm := "aws:cloudwatch/metricAlarm:MetricAlarm"

log_group := "aws:cloudwatch/logGroup:LogGroup"

# METADATA
# title: Every alarm has an action
# description: An alarm that notifies nobody wakes nobody up; it tells a topic when it fires and when it recovers.
# custom:
#   id: SHOP-CW-001
#   severity: high
#   remediation: Set alarmActions (and okActions) to the stack's alarm topic.
deny_alarm_without_action contains msg if {
	input.__type == metric_alarm
	count(object.get(input, "alarmActions", [])) == 0
	msg := sprintf("%s: the alarm has no alarm action", [input.__name])
}

deny_alarm_without_action contains msg if {
	input.__type == metric_alarm
	not truthy(object.get(input, "actionsEnabled", true))
	msg := sprintf("%s: the alarm's actions are disabled", [input.__name])
}

# METADATA
# title: Log groups have a retention
# description: Without one CloudWatch keeps logs forever, and bills for them.
# custom:
#   id: SHOP-LOG-001
#   severity: medium
#   remediation: Set retentionInDays (the stack's logRetentionDays).
deny_log_group_retention contains msg if {
	input.__type == log_group
	object.get(input, "retentionInDays", 0) == 0
	msg := sprintf("%s: the log group keeps its logs forever", [input.__name])
}

# METADATA
# title: Log groups are encrypted with a customer-managed key
# description: Request paths, client addresses and errors are in the logs; the key's policy says who may read them.
# custom:
#   id: SHOP-LOG-002
#   severity: medium
#   remediation: Set kmsKeyId to a KMS key whose policy lets CloudWatch Logs use it for this account's log groups.
deny_log_group_encryption contains msg if {
	input.__type == log_group
	object.get(input, "kmsKeyId", "") == ""
	msg := sprintf("%s: the log group is not encrypted with a customer-managed key", [input.__name])
}
