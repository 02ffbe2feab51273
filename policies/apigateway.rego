# API Gateway: access logs, tracing, throttling, and a WAF in prod.
package shopmesh

import rego.v1

# METADATA
# title: API Gateway stages write access logs
# description: Every request through the public API is logged with its caller and status.
# custom:
#   id: SHOP-APIGW-001
#   severity: medium
#   remediation: Set accessLogSettings.destinationArn (a CloudWatch log group) and format on the stage.
deny_apigw_access_logs contains msg if {
	input.__type == "aws:apigateway/stage:Stage"
	object.get(object.get(input, "accessLogSettings", {}), "destinationArn", "") == ""
	msg := sprintf("%s: stage %s has no access log", [input.__name, object.get(input, "stageName", "?")])
}

# METADATA
# title: API Gateway stages trace with X-Ray
# description: Requests can be followed from the edge into the cluster.
# custom:
#   id: SHOP-APIGW-002
#   severity: low
#   remediation: Set xrayTracingEnabled to true on the stage.
deny_apigw_xray contains msg if {
	input.__type == "aws:apigateway/stage:Stage"
	not truthy(object.get(input, "xrayTracingEnabled", false))
	msg := sprintf("%s: stage %s does not trace with X-Ray", [input.__name, object.get(input, "stageName", "?")])
}

# METADATA
# title: Method settings set throttling
# description: Every method-settings block bounds request rate and burst.
# custom:
#   id: SHOP-APIGW-003
#   severity: medium
#   remediation: Set settings.throttlingRateLimit and settings.throttlingBurstLimit above 0.
deny_apigw_method_throttling contains msg if {
	input.__type == "aws:apigateway/methodSettings:MethodSettings"
	some key in ["throttlingRateLimit", "throttlingBurstLimit"]
	object.get(object.get(input, "settings", {}), key, -1) <= 0
	msg := sprintf("%s: %s (%s) is not set", [input.__name, key, object.get(input, "methodPath", "?")])
}

# METADATA
# title: Every stage is throttled as a whole
# description: A */* method setting bounds the stage's total rate, so no route is unthrottled.
# custom:
#   id: SHOP-APIGW-004
#   severity: medium
#   remediation: Add an aws.apigateway.MethodSettings with methodPath "*/*" and throttling for the stage.
stack_deny_apigw_stage_throttling contains msg if {
	some stage in input.resources
	stage.__type == "aws:apigateway/stage:Stage"
	not stage_throttled(stage)
	msg := sprintf("%s: stage %s has no */* throttling", [stage.__name, object.get(stage, "stageName", "?")])
}

stage_throttled(stage) if {
	some ms in input.resources
	ms.__type == "aws:apigateway/methodSettings:MethodSettings"
	ms.methodPath == "*/*"
	ms.stageName == stage.stageName
	ms.settings.throttlingRateLimit > 0
}

# METADATA
# title: Production API stages sit behind a WAF
# description: AWS WAF filters common exploits and per-IP floods before they reach the cluster.
# custom:
#   id: SHOP-APIGW-005
#   severity: high
#   remediation: Associate an aws.wafv2.WebAcl with the prod stage (aws.wafv2.WebAclAssociation).
stack_deny_apigw_waf_prod contains msg if {
	some stage in input.resources
	stage.__type == "aws:apigateway/stage:Stage"
	prod_resource(stage)
	not waf_associated
	msg := sprintf("%s: prod stage %s has no WAF", [stage.__name, object.get(stage, "stageName", "?")])
}

waf_associated if {
	some r in input.resources
	r.__type == "aws:wafv2/webAclAssociation:WebAclAssociation"
}
