package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/apigateway"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/wafv2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Edge is the way in: an internal NLB whose targets are the gateway pods, and an API Gateway
// REST API that reaches it through a VPC link, with stage throttling, access logs, X-Ray and,
// in prod, WAF.
type Edge struct {
	pulumi.ResourceState

	ApiURL         pulumi.StringOutput
	NlbDNSName     pulumi.StringOutput
	TargetGroupArn pulumi.StringOutput
	// What the alarms and the dashboard watch.
	ApiName               string
	AccessLogGroup        *cloudwatch.LogGroup
	LoadBalancerArnSuffix pulumi.StringOutput
	TargetGroupArnSuffix  pulumi.StringOutput
}

// EdgeArgs configures Edge.
type EdgeArgs struct {
	Config  Config
	Network *Network
	Cluster *Cluster
	// LogsKeyArn encrypts the access logs.
	LogsKeyArn pulumi.StringOutput
}

// APIServices are the path prefixes API Gateway routes to the gateway.
var APIServices = []string{"users", "products", "orders"}

// StageName is the API Gateway stage.
const StageName = "v1"

// How the caller's address reaches the gateway: API Gateway writes the TCP source of the
// caller's connection into this header of every integration request, and the gateway believes
// the header only when it comes through the pod's sidecar (SidecarInboundSources).
const (
	ClientAddressHeader = "X-Forwarded-For"
	ClientAddressSource = "context.identity.sourceIp"
)

// NewEdge creates the NLB and the REST API in front of it.
func NewEdge(ctx *pulumi.Context, name string, args EdgeArgs, opts ...pulumi.ResourceOption) (*Edge, error) {
	e := &Edge{}
	if err := ctx.RegisterComponentResource("shopmesh:edge:Edge", name, e, opts...); err != nil {
		return nil, err
	}
	cfg, parent := args.Config, pulumi.Parent(e)

	// Only API Gateway's VPC link reaches the NLB. Its security group admits nothing inbound,
	// and the link's PrivateLink traffic is exempt from inbound rules (ELB guide, "Update the
	// security groups for your Network Load Balancer": "Enforce inbound rules on PrivateLink
	// traffic" off), so a node or a pod elsewhere in the VPC cannot reach the gateway past API
	// Gateway's throttles and WAF. Health checks obey outbound rules only: the group may reach
	// the pods' port in the VPC and nothing else.
	nlbGroup, err := ec2.NewSecurityGroup(ctx, name+"-nlb", &ec2.SecurityGroupArgs{
		Name:        pulumi.String(cfg.Name("nlb")),
		Description: pulumi.String("gateway NLB: reached through API Gateway's VPC link only"),
		VpcId:       args.Network.VpcID,
		Ingress:     ec2.SecurityGroupIngressArray{},
		Egress: ec2.SecurityGroupEgressArray{ec2.SecurityGroupEgressArgs{
			Description: pulumi.String("to the gateway pods and their health checks"),
			Protocol:    pulumi.String("tcp"),
			FromPort:    pulumi.Int(ContainerPort),
			ToPort:      pulumi.Int(ContainerPort),
			CidrBlocks:  pulumi.StringArray{pulumi.String(args.Network.VpcCidr)},
		}},
		Tags: cfg.Tags("nlb"),
	}, parent)
	if err != nil {
		return nil, err
	}

	var mappings lb.LoadBalancerSubnetMappingArray
	for i, address := range args.Network.LoadBalancerAddresses {
		mappings = append(mappings, lb.LoadBalancerSubnetMappingArgs{
			SubnetId: args.Network.PrivateSubnet(i).ID(), PrivateIpv4Address: pulumi.String(address),
		})
	}
	nlb, err := lb.NewLoadBalancer(ctx, name, &lb.LoadBalancerArgs{
		Name:                         pulumi.String(cfg.Name("nlb")),
		LoadBalancerType:             pulumi.String("network"),
		Internal:                     pulumi.Bool(true), // reached only through the VPC link
		SubnetMappings:               mappings,
		EnableCrossZoneLoadBalancing: pulumi.Bool(true),
		EnableDeletionProtection:     pulumi.Bool(cfg.Prod()),
		SecurityGroups:               pulumi.StringArray{nlbGroup.ID()},
		EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic: pulumi.String("off"),
		Tags: cfg.Tags("nlb"),
		// A replacement (an NLB created without a security group can never get one) must go
		// first: the new one takes the same name and the same reserved addresses.
	}, parent, pulumi.DependsOn(args.Network.Reservations), pulumi.DeleteBeforeReplace(true))
	if err != nil {
		return nil, err
	}
	tg, err := lb.NewTargetGroup(ctx, name+"-gateway", &lb.TargetGroupArgs{
		Name:       pulumi.String(cfg.Name("gateway")),
		TargetType: pulumi.String("ip"), // the Load Balancer Controller registers pod IPs
		Port:       pulumi.Int(ContainerPort),
		Protocol:   pulumi.String("TCP"),
		VpcId:      args.Network.VpcID,
		HealthCheck: &lb.TargetGroupHealthCheckArgs{
			Protocol: pulumi.String("HTTP"), Path: pulumi.String("/healthz"), Port: pulumi.String(itoa(ContainerPort)),
			HealthyThreshold: pulumi.Int(2), UnhealthyThreshold: pulumi.Int(2), Interval: pulumi.Int(10),
		},
		DeregistrationDelay: pulumi.Int(30),
		// The pods then see the NLB's own addresses (ELB guide, "Client IP preservation"; already
		// the default for IP targets over TCP), which the gateway's NetworkPolicy admits alone.
		PreserveClientIp: pulumi.String("false"),
		Tags:             cfg.Tags("gateway"),
	}, parent)
	if err != nil {
		return nil, err
	}
	if _, err := lb.NewListener(ctx, name, &lb.ListenerArgs{
		LoadBalancerArn: nlb.Arn,
		Port:            pulumi.Int(80),
		Protocol:        pulumi.String("TCP"),
		DefaultActions:  lb.ListenerDefaultActionArray{lb.ListenerDefaultActionArgs{Type: pulumi.String("forward"), TargetGroupArn: tg.Arn}},
		Tags:            cfg.Tags("nlb"),
	}, parent); err != nil {
		return nil, err
	}
	// The NLB forwards and health-checks to the pods, which carry the cluster security group:
	// that group admits the NLB's group, not an address range (ELB guide, same page: "Accept
	// traffic only from the Network Load Balancer").
	if _, err := ec2.NewSecurityGroupRule(ctx, name+"-nlb-to-gateway", &ec2.SecurityGroupRuleArgs{
		Type:                  pulumi.String("ingress"),
		Description:           pulumi.String("NLB to gateway pods"),
		SecurityGroupId:       args.Cluster.SecurityGroupID,
		Protocol:              pulumi.String("tcp"),
		FromPort:              pulumi.Int(ContainerPort),
		ToPort:                pulumi.Int(ContainerPort),
		SourceSecurityGroupId: nlbGroup.ID(),
	}, parent); err != nil {
		return nil, err
	}

	api, err := apigateway.NewRestApi(ctx, name, &apigateway.RestApiArgs{
		Name:                  pulumi.String(cfg.Name("api")),
		Description:           pulumi.String("shopmesh public API; every request goes to the in-cluster gateway"),
		EndpointConfiguration: &apigateway.RestApiEndpointConfigurationArgs{Types: pulumi.String("REGIONAL")},
		Tags:                  cfg.Tags("api"),
	}, parent)
	if err != nil {
		return nil, err
	}
	link, err := apigateway.NewVpcLink(ctx, name, &apigateway.VpcLinkArgs{
		Name: pulumi.String(cfg.Name("vpc-link")), TargetArn: nlb.Arn, Tags: cfg.Tags("vpc-link"),
	}, parent)
	if err != nil {
		return nil, err
	}

	var routes []pulumi.Resource
	var routeIDs pulumi.StringArray
	route := func(resName string, resource *apigateway.Resource, verb, uri string, proxy bool) error {
		m := &apigateway.MethodArgs{RestApi: api.ID(), ResourceId: resource.ID(), HttpMethod: pulumi.String(verb), Authorization: pulumi.String("NONE")}
		in := &apigateway.IntegrationArgs{
			RestApi: api.ID(), ResourceId: resource.ID(), HttpMethod: pulumi.String(verb),
			Type: pulumi.String("HTTP_PROXY"), IntegrationHttpMethod: pulumi.String(verb),
			Uri:            pulumi.Sprintf("http://%s%s", nlb.DnsName, uri),
			ConnectionType: pulumi.String("VPC_LINK"), ConnectionId: link.ID(),
			TimeoutMilliseconds: pulumi.Int(29000),
		}
		// The caller's address reaches the gateway in X-Forwarded-For, set from the TCP source of
		// the caller's connection to the regional endpoint, which a client cannot choose (API
		// Gateway developer guide: "Parameter mapping source reference for REST APIs", context
		// variables, for proxy integrations too; "Variables for data transformations",
		// $context.identity.sourceIp). The NLB and the sidecar add nothing to it, and the gateway
		// believes it only from the sidecar's address (ClientAddressHeader, TRUSTED_PROXIES).
		in.RequestParameters = pulumi.StringMap{"integration.request.header." + ClientAddressHeader: pulumi.String(ClientAddressSource)}
		if proxy {
			m.RequestParameters = pulumi.BoolMap{"method.request.path.proxy": pulumi.Bool(true)}
			in.RequestParameters = pulumi.StringMap{
				"integration.request.path.proxy":                    pulumi.String("method.request.path.proxy"),
				"integration.request.header." + ClientAddressHeader: pulumi.String(ClientAddressSource),
			}
		}
		method, err := apigateway.NewMethod(ctx, resName, m, parent)
		if err != nil {
			return err
		}
		integration, err := apigateway.NewIntegration(ctx, resName, in, parent, pulumi.DependsOn([]pulumi.Resource{method}))
		if err != nil {
			return err
		}
		routes = append(routes, method, integration)
		// Everything the stage serves for this route: a change to any of it (a timeout, a
		// parameter mapping, the VPC link) must make a new deployment.
		spec := pulumi.Map{
			"method": method.ID(), "integration": integration.ID(), "verb": pulumi.String(verb), "uri": in.Uri,
			"type": in.Type, "connection": in.ConnectionId, "timeout": in.TimeoutMilliseconds, "authorization": m.Authorization,
		}
		spec["integrationParameters"] = in.RequestParameters
		if proxy {
			spec["methodParameters"] = m.RequestParameters
		}
		routeIDs = append(routeIDs, pulumi.JSONMarshal(spec))
		return nil
	}
	for _, svc := range APIServices {
		res, err := apigateway.NewResource(ctx, name+"-"+svc, &apigateway.ResourceArgs{RestApi: api.ID(), ParentId: api.RootResourceId, PathPart: pulumi.String(svc)}, parent)
		if err != nil {
			return nil, err
		}
		proxy, err := apigateway.NewResource(ctx, name+"-"+svc+"-proxy", &apigateway.ResourceArgs{RestApi: api.ID(), ParentId: res.ID(), PathPart: pulumi.String("{proxy+}")}, parent)
		if err != nil {
			return nil, err
		}
		if err := route(name+"-"+svc+"-any", res, "ANY", "/"+svc, false); err != nil {
			return nil, err
		}
		if err := route(name+"-"+svc+"-proxy-any", proxy, "ANY", "/"+svc+"/{proxy}", true); err != nil {
			return nil, err
		}
		// POST /orders gets its own method so that it can have its own throttling.
		if svc == "orders" {
			if err := route(name+"-orders-post", res, "POST", "/orders", false); err != nil {
				return nil, err
			}
		}
	}
	// A new deployment whenever any route changes; otherwise the stage keeps serving the old ones.
	trigger := routeIDs.ToStringArrayOutput().ApplyT(func(ids []string) string {
		b, _ := json.Marshal(ids)
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}).(pulumi.StringOutput)
	deployment, err := apigateway.NewDeployment(ctx, name, &apigateway.DeploymentArgs{
		RestApi:     api.ID(),
		Description: pulumi.String("shopmesh routes"),
		Triggers:    pulumi.StringMap{"redeployment": trigger},
	}, parent, pulumi.DependsOn(routes))
	if err != nil {
		return nil, err
	}

	logs, err := cloudwatch.NewLogGroup(ctx, name+"-access", &cloudwatch.LogGroupArgs{
		Name:            pulumi.String("/aws/apigateway/" + cfg.Name("api")),
		RetentionInDays: pulumi.Int(cfg.LogRetentionDays),
		KmsKeyId:        args.LogsKeyArn,
		Tags:            cfg.Tags("api-access-logs"),
	}, parent)
	if err != nil {
		return nil, err
	}
	// The stage's access logs need the account's CloudWatch role for API Gateway, which the
	// account stack sets (AccountProgram).
	stage, err := apigateway.NewStage(ctx, name, &apigateway.StageArgs{
		RestApi:            api.ID(),
		Deployment:         deployment.ID(),
		StageName:          pulumi.String(StageName),
		XrayTracingEnabled: pulumi.Bool(true),
		AccessLogSettings: &apigateway.StageAccessLogSettingsArgs{
			DestinationArn: logs.Arn,
			Format:         pulumi.String(accessLogFormat()),
		},
		Tags: cfg.Tags("api-" + StageName),
	}, parent)
	if err != nil {
		return nil, err
	}
	for path, limit := range map[string]struct {
		rate  int
		burst int
	}{
		"*/*":         {cfg.ApiThrottleRate, cfg.ApiThrottleBurst},
		"orders/POST": {cfg.OrdersThrottleRate, cfg.OrdersThrottleBurst},
	} {
		if _, err := apigateway.NewMethodSettings(ctx, name+"-"+strings.NewReplacer("*", "all", "/", "-").Replace(path), &apigateway.MethodSettingsArgs{
			RestApi:    api.ID(),
			StageName:  stage.StageName,
			MethodPath: pulumi.String(path),
			Settings: &apigateway.MethodSettingsSettingsArgs{
				ThrottlingRateLimit:  pulumi.Float64(float64(limit.rate)),
				ThrottlingBurstLimit: pulumi.Int(limit.burst),
				MetricsEnabled:       pulumi.Bool(true),
				LoggingLevel:         pulumi.String("ERROR"),
			},
		}, parent); err != nil {
			return nil, err
		}
	}
	// No usage plan: without API keys a usage plan limits nothing; the stage's method settings
	// above are the throttle, and WAF's rate rule is the per-client limit in prod.
	if cfg.EnableWaf {
		if err := webACL(ctx, name, cfg, stage, parent); err != nil {
			return nil, err
		}
	}

	e.ApiName, e.AccessLogGroup = cfg.Name("api"), logs
	e.LoadBalancerArnSuffix, e.TargetGroupArnSuffix = nlb.ArnSuffix, tg.ArnSuffix
	e.ApiURL = stage.InvokeUrl
	e.NlbDNSName = nlb.DnsName
	e.TargetGroupArn = tg.Arn
	if err := ctx.RegisterResourceOutputs(e, pulumi.Map{"apiUrl": e.ApiURL, "nlbDnsName": e.NlbDNSName, "targetGroupArn": e.TargetGroupArn}); err != nil {
		return nil, err
	}
	return e, nil
}

// accessLogFormat is one JSON object per request.
func accessLogFormat() string {
	b, _ := json.Marshal(map[string]string{
		"requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "requestTime": "$context.requestTime",
		"httpMethod": "$context.httpMethod", "resourcePath": "$context.resourcePath", "status": "$context.status",
		"protocol": "$context.protocol", "responseLength": "$context.responseLength",
		"integrationLatency": "$context.integrationLatency", "xrayTraceId": "$context.xrayTraceId",
	})
	return string(b)
}

// webACL blocks clients over cfg.WafRateLimit requests per 5 minutes and applies AWS's common
// rule set, on the API stage.
func webACL(ctx *pulumi.Context, name string, cfg Config, stage *apigateway.Stage, parent pulumi.ResourceOrInvokeOption) error {
	visibility := func(metric string) *wafv2.WebAclRuleVisibilityConfigArgs {
		return &wafv2.WebAclRuleVisibilityConfigArgs{CloudwatchMetricsEnabled: pulumi.Bool(true), MetricName: pulumi.String(metric), SampledRequestsEnabled: pulumi.Bool(true)}
	}
	acl, err := wafv2.NewWebAcl(ctx, name, &wafv2.WebAclArgs{
		Name:          pulumi.String(cfg.Name("api")),
		Scope:         pulumi.String("REGIONAL"),
		DefaultAction: &wafv2.WebAclDefaultActionArgs{Allow: &wafv2.WebAclDefaultActionAllowArgs{}},
		Rules: wafv2.WebAclRuleArray{
			wafv2.WebAclRuleArgs{
				Name: pulumi.String("rate-limit-per-ip"), Priority: pulumi.Int(1),
				Action: &wafv2.WebAclRuleActionArgs{Block: &wafv2.WebAclRuleActionBlockArgs{}},
				Statement: &wafv2.WebAclRuleStatementArgs{RateBasedStatement: &wafv2.WebAclRuleStatementRateBasedStatementArgs{
					Limit: pulumi.Int(cfg.WafRateLimit), AggregateKeyType: pulumi.String("IP"),
				}},
				VisibilityConfig: visibility("rate-limit-per-ip"),
			},
			wafv2.WebAclRuleArgs{
				Name: pulumi.String("aws-common-rules"), Priority: pulumi.Int(2),
				OverrideAction: &wafv2.WebAclRuleOverrideActionArgs{None: &wafv2.WebAclRuleOverrideActionNoneArgs{}},
				Statement: &wafv2.WebAclRuleStatementArgs{ManagedRuleGroupStatement: &wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs{
					Name: pulumi.String("AWSManagedRulesCommonRuleSet"), VendorName: pulumi.String("AWS"),
				}},
				VisibilityConfig: visibility("aws-common-rules"),
			},
		},
		VisibilityConfig: &wafv2.WebAclVisibilityConfigArgs{CloudwatchMetricsEnabled: pulumi.Bool(true), MetricName: pulumi.String(cfg.Name("api")), SampledRequestsEnabled: pulumi.Bool(true)},
		Tags:             cfg.Tags("waf"),
	}, parent)
	if err != nil {
		return err
	}
	_, err = wafv2.NewWebAclAssociation(ctx, name, &wafv2.WebAclAssociationArgs{ResourceArn: stage.Arn, WebAclArn: acl.Arn}, parent)
	return err
}
