package platform

import (
	"reflect"
	"strings"
	"testing"
)

func TestEdge(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		nlb := one(t, p, "aws:lb/loadBalancer:LoadBalancer")
		if nlb.Inputs["internal"] != true || nlb.Inputs["loadBalancerType"] != "network" || !reflect.DeepEqual(sorted(nlb.Inputs["subnets"]), privateSubnetIDs(p)) {
			t.Errorf("NLB = %v, want internal, network, in the private subnets", nlb.Inputs)
		}
		tg := one(t, p, "aws:lb/targetGroup:TargetGroup")
		if tg.Inputs["targetType"] != "ip" || tg.Inputs["port"] != float64(ContainerPort) || at(tg.Inputs, "healthCheck.path") != "/healthz" {
			t.Errorf("target group = %v", tg.Inputs)
		}

		integrations := p.ByType("aws:apigateway/integration:Integration")
		if len(integrations) != 2*len(APIServices)+1 {
			t.Errorf("%d integrations, want ANY and {proxy+} per service plus POST /orders", len(integrations))
		}
		for _, in := range integrations {
			if in.Inputs["type"] != "HTTP_PROXY" || in.Inputs["connectionType"] != "VPC_LINK" || !strings.Contains(in.Inputs["uri"].(string), ".elb.") {
				t.Errorf("integration %s = %v, want HTTP_PROXY over the VPC link to the NLB", in.Name, in.Inputs)
			}
		}
		deployment := one(t, p, "aws:apigateway/deployment:Deployment")
		if trigger, _ := at(deployment.Inputs, "triggers.redeployment").(string); len(trigger) != 64 {
			t.Errorf("deployment trigger = %v, want a hash of the routes", deployment.Inputs["triggers"])
		}

		stage := one(t, p, "aws:apigateway/stage:Stage")
		logs := one(t, p, "aws:cloudwatch/logGroup:LogGroup")
		if stage.Inputs["xrayTracingEnabled"] != true || !strings.HasSuffix(at(stage.Inputs, "accessLogSettings.destinationArn").(string), ":log-group:"+logs.Inputs["name"].(string)) ||
			!strings.HasPrefix(at(stage.Inputs, "accessLogSettings.format").(string), "{") {
			t.Errorf("stage = %v, want X-Ray and JSON access logs to the log group", stage.Inputs)
		}
		if logs.Inputs["retentionInDays"] != float64(cfg.LogRetentionDays) {
			t.Errorf("log retention = %v, want %d", logs.Inputs["retentionInDays"], cfg.LogRetentionDays)
		}

		throttled := map[string]bool{}
		for _, ms := range p.ByType("aws:apigateway/methodSettings:MethodSettings") {
			path := ms.Inputs["methodPath"].(string)
			throttled[path] = true
			if path == "orders/POST" && (at(ms.Inputs, "settings.throttlingRateLimit") != float64(cfg.OrdersThrottleRate) ||
				at(ms.Inputs, "settings.throttlingBurstLimit") != float64(cfg.OrdersThrottleBurst)) {
				t.Errorf("POST /orders throttling = %v, want rate %v burst %d", ms.Inputs["settings"], cfg.OrdersThrottleRate, cfg.OrdersThrottleBurst)
			}
		}
		if !throttled["*/*"] || !throttled["orders/POST"] {
			t.Errorf("throttled paths = %v, want */* and orders/POST", throttled)
		}

		wantWAF := 0
		if cfg.EnableWaf {
			wantWAF = 1
		}
		if n := len(p.ByType("aws:wafv2/webAclAssociation:WebAclAssociation")); n != wantWAF {
			t.Errorf("%d WAF associations, want %d", n, wantWAF)
		}
		if cfg.EnableWaf {
			acl := one(t, p, "aws:wafv2/webAcl:WebAcl")
			if at(acl.Inputs, "rules.0.statement.rateBasedStatement.aggregateKeyType") != "IP" || at(acl.Inputs, "rules.0.action.block") == nil {
				t.Errorf("WAF rules = %v, want a blocking rate-based rule per IP first", acl.Inputs["rules"])
			}
		}
	})
	// The account-wide CloudWatch role follows its flag: dev sets it, prod does not.
	if n := len(planFor(t, "dev").ByType("aws:apigateway/account:Account")); n != 1 {
		t.Errorf("dev has %d API Gateway account settings, want 1", n)
	}
	if n := len(planFor(t, "prod").ByType("aws:apigateway/account:Account")); n != 0 {
		t.Errorf("prod has %d API Gateway account settings, want 0", n)
	}
}

func TestStackOutputs(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		for _, name := range []string{"apiUrl", "clusterName", "kubeconfig", "repositoryUrls", "databaseEndpoint", "nlbDnsName"} {
			if v, ok := p.Outputs[name]; !ok || v == "" || v == nil {
				t.Errorf("output %s = %v", name, v)
			}
		}
		if url, _ := p.Outputs["apiUrl"].(string); !strings.HasPrefix(url, "https://") || !strings.HasSuffix(url, "/"+StageName) {
			t.Errorf("apiUrl = %v", p.Outputs["apiUrl"])
		}
	})
}
