package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestEdge(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		nlb := one(t, p, "aws:lb/loadBalancer:LoadBalancer")
		var mapped, addresses []string
		for i := range len(privateSubnetIDs(p)) {
			mapped = append(mapped, fmt.Sprint(at(nlb.Inputs, fmt.Sprintf("subnetMappings.%d.subnetId", i))))
			addresses = append(addresses, fmt.Sprint(at(nlb.Inputs, fmt.Sprintf("subnetMappings.%d.privateIpv4Address", i))))
		}
		if nlb.Inputs["internal"] != true || nlb.Inputs["loadBalancerType"] != "network" || !reflect.DeepEqual(mapped, privateSubnetIDs(p)) {
			t.Errorf("NLB = %v, want internal, network, mapped to the private subnets", nlb.Inputs)
		}
		// Each address lies in an explicit reservation of its own subnet, which the NLB waits for.
		reservations := p.ByType("aws:ec2/subnetCidrReservation:SubnetCidrReservation")
		if len(reservations) != len(addresses) {
			t.Fatalf("%d reservations for %d NLB addresses", len(reservations), len(addresses))
		}
		for i := range reservations {
			r := named(t, p, "aws:ec2/subnetCidrReservation:SubnetCidrReservation", fmt.Sprintf("network-private-%d-nlb", i))
			block := netip.MustParsePrefix(r.Inputs["cidrBlock"].(string))
			subnet := named(t, p, "aws:ec2/subnet:Subnet", fmt.Sprintf("network-private-%d", i))
			if r.Inputs["reservationType"] != "explicit" || r.Inputs["subnetId"] != subnet.Name+"-id" ||
				!block.Contains(netip.MustParseAddr(addresses[i])) || !netip.MustParsePrefix(subnet.Inputs["cidrBlock"].(string)).Contains(block.Addr()) {
				t.Errorf("reservation %v does not hold NLB address %s in subnet %v", r.Inputs, addresses[i], subnet.Inputs["cidrBlock"])
			}
			if !slices.Contains(nlb.Dependencies, r.URN) {
				t.Errorf("the NLB does not wait for reservation %s", r.Name)
			}
		}
		tg := one(t, p, "aws:lb/targetGroup:TargetGroup")
		if tg.Inputs["targetType"] != "ip" || tg.Inputs["port"] != float64(ContainerPort) || at(tg.Inputs, "healthCheck.path") != "/healthz" ||
			tg.Inputs["preserveClientIp"] != "false" {
			t.Errorf("target group = %v, want IP targets on the container port, /healthz, the NLB's own source addresses", tg.Inputs)
		}
		// The NLB has a group that admits nothing but the VPC link's PrivateLink traffic, and
		// the pods admit that group, no address range.
		group := named(t, p, "aws:ec2/securityGroup:SecurityGroup", "edge-nlb")
		if groups := asStrings(nlb.Inputs["securityGroups"]); !reflect.DeepEqual(groups, []string{group.Name + "-id"}) ||
			nlb.Inputs["enforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] != "off" {
			t.Errorf("NLB security groups %v, PrivateLink enforcement %v: want its own group, and the VPC link's traffic exempt from its inbound rules",
				groups, nlb.Inputs["enforceSecurityGroupInboundRulesOnPrivateLinkTraffic"])
		}
		if in, _ := group.Inputs["ingress"].([]any); len(in) != 0 {
			t.Errorf("the NLB's group admits %v: anything in the VPC would reach the gateway past API Gateway", in)
		}
		if out, _ := group.Inputs["egress"].([]any); len(out) != 1 || at(out[0], "fromPort") != float64(ContainerPort) ||
			!reflect.DeepEqual(asStrings(at(out[0], "cidrBlocks")), asStrings(one(t, p, "aws:ec2/vpc:Vpc").Inputs["cidrBlock"])) {
			t.Errorf("the NLB's group may reach %v, want the pods' port %d in the VPC only", out, ContainerPort)
		}
		rule := named(t, p, "aws:ec2/securityGroupRule:SecurityGroupRule", "edge-nlb-to-gateway")
		if rule.Inputs["sourceSecurityGroupId"] != group.Name+"-id" || rule.Inputs["cidrBlocks"] != nil {
			t.Errorf("NLB-to-gateway rule admits %v / %v, want the NLB's group alone", rule.Inputs["sourceSecurityGroupId"], rule.Inputs["cidrBlocks"])
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
		// The caller's address: API Gateway sets it from the connection, the gateway believes it
		// from its sidecar alone.
		for _, in := range integrations {
			params, _ := in.Inputs["requestParameters"].(map[string]any)
			if got := params["integration.request.header."+ClientAddressHeader]; got != ClientAddressSource {
				t.Errorf("integration %s maps %s from %v, want %s: otherwise the caller's own header, or none, reaches the gateway",
					in.Name, ClientAddressHeader, got, ClientAddressSource)
			}
		}
		gatewayEnv := named(t, p, "kubernetes:core/v1:ConfigMap", "gateway").Inputs["data"].(map[string]any)
		if got := gatewayEnv["TRUSTED_PROXIES"]; got != strings.Join(SidecarInboundSources, ",") {
			t.Errorf("gateway TRUSTED_PROXIES = %v, want the sidecar's inbound addresses %v only", got, SidecarInboundSources)
		}
		deployment := one(t, p, "aws:apigateway/deployment:Deployment")
		if trigger, _ := at(deployment.Inputs, "triggers.redeployment").(string); trigger != routeHash(t, p) {
			t.Errorf("deployment trigger = %v, want the hash of every route's method, integration, URI, type, VPC link, timeout and parameters", trigger)
		}
		if n := len(p.ByType("aws:apigateway/usagePlan:UsagePlan")); n != 0 {
			t.Errorf("%d usage plans: without API keys a usage plan limits nothing", n)
		}

		stage := one(t, p, "aws:apigateway/stage:Stage")
		logs := named(t, p, "aws:cloudwatch/logGroup:LogGroup", "edge-access")
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
}

// routeHash recomputes the deployment trigger from the plan: the sha256 of the JSON list of each
// route's method and integration IDs and the integration inputs the stage serves.
func routeHash(t *testing.T, p *Plan) string {
	t.Helper()
	var specs, order []string
	for _, svc := range APIServices { // the order edge.go declares the routes in
		order = append(order, "edge-"+svc+"-any", "edge-"+svc+"-proxy-any")
		if svc == "orders" {
			order = append(order, "edge-orders-post")
		}
	}
	for _, name := range order {
		in := named(t, p, "aws:apigateway/integration:Integration", name)
		m := named(t, p, "aws:apigateway/method:Method", name)
		spec := map[string]any{
			"method": m.Name + "-id", "integration": in.Name + "-id", "verb": in.Inputs["httpMethod"], "uri": in.Inputs["uri"],
			"type": in.Inputs["type"], "connection": in.Inputs["connectionId"], "timeout": in.Inputs["timeoutMilliseconds"],
			"authorization": m.Inputs["authorization"],
		}
		if in.Inputs["requestParameters"] != nil {
			spec["integrationParameters"] = in.Inputs["requestParameters"]
		}
		if m.Inputs["requestParameters"] != nil {
			spec["methodParameters"] = m.Inputs["requestParameters"]
		}
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, string(b))
	}
	b, _ := json.Marshal(specs)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
