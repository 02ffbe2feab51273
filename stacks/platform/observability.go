package platform

import (
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	awseks "github.com/pulumi/pulumi-aws/sdk/v6/go/aws/eks"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The CloudWatch agent the Amazon CloudWatch Observability add-on runs on every node serves
// OTLP on 4317 (gRPC) and 4318 (HTTP), in plaintext, from add-on version 8.0.0 (CloudWatch user
// guide, "OTLP ingestion"); traces go on to X-Ray.
const (
	cloudWatchNamespace = "amazon-cloudwatch"
	cloudWatchAgentSA   = "cloudwatch-agent"
	OTLPPort            = 4318
	OTLPEndpoint        = "http://cloudwatch-agent.amazon-cloudwatch.svc.cluster.local:4318"
)

// containerLogGroups are the log groups Container Insights writes to; created here first, so
// that they have the stack's retention and encryption instead of none.
var containerLogGroups = []string{"application", "dataplane", "host", "performance"}

// ObservabilityArgs configure Observability.
type ObservabilityArgs struct {
	Config      Config
	Cluster     *Cluster
	ClusterName string
	Logs        *Logs // the stack's logs key
}

// Observability is what an operator is told by: container logs, metrics and traces through the
// CloudWatch Observability add-on, a dashboard per stack, and alarms to an SNS topic.
type Observability struct {
	pulumi.ResourceState

	LogsKeyArn pulumi.StringOutput // encrypts every log group of the stack and the alarm topic
	TopicArn   pulumi.StringOutput

	cfg    Config
	parent pulumi.ResourceOrInvokeOption
	logs   []pulumi.Resource
}

// NewObservability creates the alarm topic and its subscriptions, the container log
// groups, and the add-on with its IRSA role. Watch adds the alarms and the dashboard once the
// things they watch exist.
func NewObservability(ctx *pulumi.Context, name string, args ObservabilityArgs, opts ...pulumi.ResourceOption) (*Observability, error) {
	cfg := args.Config
	o := &Observability{cfg: cfg}
	if err := ctx.RegisterComponentResource("shopmesh:observability:Observability", name, o, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(o)
	o.parent = parent

	o.LogsKeyArn = args.Logs.KeyArn

	topic, err := sns.NewTopic(ctx, name+"-alarms", &sns.TopicArgs{
		Name:           pulumi.String(cfg.Name("alarms")),
		KmsMasterKeyId: o.LogsKeyArn,
		Tags:           cfg.Tags("alarms"),
	}, parent)
	if err != nil {
		return nil, err
	}
	o.TopicArn = topic.Arn
	for i, email := range cfg.AlarmEmails {
		if _, err := sns.NewTopicSubscription(ctx, fmt.Sprintf("%s-alarms-%d", name, i), &sns.TopicSubscriptionArgs{
			Topic: topic.Arn, Protocol: pulumi.String("email"), Endpoint: pulumi.String(email),
		}, parent); err != nil {
			return nil, err
		}
	}

	for _, g := range containerLogGroups {
		lg, err := cloudwatch.NewLogGroup(ctx, name+"-"+g, &cloudwatch.LogGroupArgs{
			Name:            pulumi.String("/aws/containerinsights/" + args.ClusterName + "/" + g),
			RetentionInDays: pulumi.Int(cfg.LogRetentionDays),
			KmsKeyId:        o.LogsKeyArn,
			Tags:            cfg.Tags("logs-" + g),
		}, parent)
		if err != nil {
			return nil, err
		}
		o.logs = append(o.logs, lg)
	}

	role, err := args.Cluster.ServiceAccountRole(ctx, name+"-agent", cloudWatchNamespace, cloudWatchAgentSA, cfg, nil, parent)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"CloudWatchAgentServerPolicy", "AWSXrayWriteOnlyAccess"} {
		if _, err := iam.NewRolePolicyAttachment(ctx, name+"-agent-"+p, &iam.RolePolicyAttachmentArgs{
			Role: role.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/" + p),
		}, parent); err != nil {
			return nil, err
		}
	}
	// After the node group (the agent and Fluent Bit are DaemonSets) and the log groups (else
	// Fluent Bit creates them, without retention or encryption).
	deps := append([]pulumi.Resource{args.Cluster.NodeGroup}, o.logs...)
	if _, err := awseks.NewAddon(ctx, name+"-cloudwatch", &awseks.AddonArgs{
		ClusterName:              args.Cluster.Name,
		AddonName:                pulumi.String("amazon-cloudwatch-observability"),
		AddonVersion:             optional(cfg.CloudWatchAddonVersion),
		ServiceAccountRoleArn:    role.Arn,
		ResolveConflictsOnCreate: pulumi.String("OVERWRITE"),
		ResolveConflictsOnUpdate: pulumi.String("OVERWRITE"),
		Tags:                     cfg.Tags("cloudwatch-observability"),
	}, parent, pulumi.DependsOn(deps)); err != nil {
		return nil, err
	}
	return o, nil
}

func optional(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}

// Watched are the things the alarms and the dashboard watch.
type Watched struct {
	ApiName, Stage        string
	AccessLogGroup        *cloudwatch.LogGroup
	LoadBalancerArnSuffix pulumi.StringOutput
	TargetGroupArnSuffix  pulumi.StringOutput
	DbInstance            string // identifier
	DbAllocatedGiB        int
	ClusterName           string
}

// alarm is one CloudWatch alarm: what wakes someone up, and the runbook line README gives it.
type alarm struct {
	name, description string
	args              *cloudwatch.MetricAlarmArgs
}

// Watch creates the alarms (each to the topic, on alarm and on recovery), the metric of the
// 429s API Gateway answers, and the stack's dashboard.
func (o *Observability) Watch(ctx *pulumi.Context, w Watched) error {
	cfg, parent := o.cfg, o.parent
	ns := "shopmesh/" + cfg.Stack
	// API Gateway counts 429s among its 4XXErrors only: the access log says which they were.
	if _, err := cloudwatch.NewLogMetricFilter(ctx, "api-429", &cloudwatch.LogMetricFilterArgs{
		LogGroupName: w.AccessLogGroup.Name,
		Name:         pulumi.String(cfg.Name("api-429")),
		Pattern:      pulumi.String(`{ $.status = "429" }`),
		MetricTransformation: &cloudwatch.LogMetricFilterMetricTransformationArgs{
			Name: pulumi.String("Api429"), Namespace: pulumi.String(ns), Value: pulumi.String("1"), DefaultValue: pulumi.String("0"),
		},
	}, parent); err != nil {
		return err
	}
	api := pulumi.StringMap{"ApiName": pulumi.String(w.ApiName), "Stage": pulumi.String(w.Stage)}
	db := pulumi.StringMap{"DBInstanceIdentifier": pulumi.String(w.DbInstance)}
	metric := func(id, namespace, name, stat string, dims pulumi.StringMap) cloudwatch.MetricAlarmMetricQueryArgs {
		return cloudwatch.MetricAlarmMetricQueryArgs{Id: pulumi.String(id), Metric: &cloudwatch.MetricAlarmMetricQueryMetricArgs{
			Namespace: pulumi.String(namespace), MetricName: pulumi.String(name), Stat: pulumi.String(stat), Period: pulumi.Int(300), Dimensions: dims,
		}}
	}
	alarms := []alarm{
		{"api-5xx-rate", fmt.Sprintf("More than %d %% of API requests failed with 5xx for 10 of the last 15 minutes.", cfg.Alarm5xxPercent),
			&cloudwatch.MetricAlarmArgs{
				ComparisonOperator: pulumi.String("GreaterThanThreshold"), Threshold: pulumi.Float64(float64(cfg.Alarm5xxPercent)),
				EvaluationPeriods: pulumi.Int(3), DatapointsToAlarm: pulumi.Int(2),
				MetricQueries: cloudwatch.MetricAlarmMetricQueryArray{
					metric("errors", "AWS/ApiGateway", "5XXError", "Sum", api),
					metric("requests", "AWS/ApiGateway", "Count", "Sum", api),
					cloudwatch.MetricAlarmMetricQueryArgs{Id: pulumi.String("rate"), Expression: pulumi.String("IF(requests > 0, 100 * errors / requests, 0)"),
						Label: pulumi.String("5xx %"), ReturnData: pulumi.Bool(true)},
				},
			}},
		{"api-latency-p99", fmt.Sprintf("The API's p99 latency was over %d ms for 10 of the last 15 minutes.", cfg.AlarmLatencyP99Ms),
			&cloudwatch.MetricAlarmArgs{
				ComparisonOperator: pulumi.String("GreaterThanThreshold"), Threshold: pulumi.Float64(float64(cfg.AlarmLatencyP99Ms)),
				EvaluationPeriods: pulumi.Int(3), DatapointsToAlarm: pulumi.Int(2), Period: pulumi.Int(300),
				Namespace: pulumi.String("AWS/ApiGateway"), MetricName: pulumi.String("Latency"), ExtendedStatistic: pulumi.String("p99"),
				Dimensions: api,
			}},
		{"unhealthy-targets", "A gateway pod behind the NLB failed its health checks for 3 minutes.",
			&cloudwatch.MetricAlarmArgs{
				ComparisonOperator: pulumi.String("GreaterThanThreshold"), Threshold: pulumi.Float64(0),
				EvaluationPeriods: pulumi.Int(3), Period: pulumi.Int(60), Statistic: pulumi.String("Maximum"),
				Namespace: pulumi.String("AWS/NetworkELB"), MetricName: pulumi.String("UnHealthyHostCount"),
				Dimensions: pulumi.StringMap{"LoadBalancer": w.LoadBalancerArnSuffix, "TargetGroup": w.TargetGroupArnSuffix},
			}},
		{"db-free-storage", fmt.Sprintf("The database has less than %d %% of its %d GiB free (storage autoscaling may be at its maximum).", cfg.AlarmDbFreeStoragePercent, w.DbAllocatedGiB),
			&cloudwatch.MetricAlarmArgs{
				ComparisonOperator: pulumi.String("LessThanThreshold"),
				Threshold:          pulumi.Float64(float64(w.DbAllocatedGiB) * (1 << 30) * float64(cfg.AlarmDbFreeStoragePercent) / 100),
				EvaluationPeriods:  pulumi.Int(1), Period: pulumi.Int(300), Statistic: pulumi.String("Minimum"),
				Namespace: pulumi.String("AWS/RDS"), MetricName: pulumi.String("FreeStorageSpace"), Dimensions: db,
			}},
		{"db-cpu", fmt.Sprintf("The database's CPU was over %d %% for 15 minutes.", cfg.AlarmDbCpuPercent),
			&cloudwatch.MetricAlarmArgs{
				ComparisonOperator: pulumi.String("GreaterThanThreshold"), Threshold: pulumi.Float64(float64(cfg.AlarmDbCpuPercent)),
				EvaluationPeriods: pulumi.Int(3), Period: pulumi.Int(300), Statistic: pulumi.String("Average"),
				Namespace: pulumi.String("AWS/RDS"), MetricName: pulumi.String("CPUUtilization"), Dimensions: db,
			}},
	}
	for _, svc := range Services {
		alarms = append(alarms, alarm{"restarts-" + svc,
			fmt.Sprintf("The %s pods' containers restarted more than %d times in 15 minutes (crash loop, OOM kill, failing liveness probe).", svc, cfg.AlarmPodRestarts),
			&cloudwatch.MetricAlarmArgs{
				ComparisonOperator: pulumi.String("GreaterThanThreshold"), Threshold: pulumi.Float64(float64(cfg.AlarmPodRestarts)),
				EvaluationPeriods: pulumi.Int(1), Period: pulumi.Int(900), Statistic: pulumi.String("Sum"),
				Namespace: pulumi.String("ContainerInsights"), MetricName: pulumi.String("pod_number_of_container_restarts"),
				Dimensions: pulumi.StringMap{"ClusterName": pulumi.String(w.ClusterName), "Namespace": pulumi.String(Namespace), "PodName": pulumi.String(svc)},
			}})
	}
	for _, a := range alarms {
		a.args.Name = pulumi.String(cfg.Name(a.name))
		a.args.AlarmDescription = pulumi.String(a.description + " Runbook: README, \"Alarms\".")
		a.args.AlarmActions = pulumi.Array{o.TopicArn}
		a.args.OkActions = pulumi.Array{o.TopicArn}
		a.args.TreatMissingData = pulumi.String("notBreaching") // no traffic is not an outage
		a.args.Tags = cfg.Tags("alarm-" + a.name)
		if _, err := cloudwatch.NewMetricAlarm(ctx, a.name, a.args, parent); err != nil {
			return err
		}
	}

	body := pulumi.All(w.LoadBalancerArnSuffix, w.TargetGroupArnSuffix).ApplyT(func(v []any) (string, error) {
		return dashboardBody(cfg, w, v[0].(string), v[1].(string))
	}).(pulumi.StringOutput)
	if _, err := cloudwatch.NewDashboard(ctx, "dashboard", &cloudwatch.DashboardArgs{
		DashboardName: pulumi.String(cfg.Name("overview")), DashboardBody: body,
	}, parent); err != nil {
		return err
	}
	return ctx.RegisterResourceOutputs(o, pulumi.Map{"topicArn": o.TopicArn, "logsKeyArn": o.LogsKeyArn})
}

// dashboardBody is the CloudWatch dashboard's JSON (CloudWatch API reference, "Dashboard Body
// Structure and Syntax"): one metric widget per row of graphs.
func dashboardBody(cfg Config, w Watched, lbSuffix, tgSuffix string) (string, error) {
	type widget struct {
		Type       string         `json:"type"`
		X          int            `json:"x"`
		Y          int            `json:"y"`
		Width      int            `json:"width"`
		Height     int            `json:"height"`
		Properties map[string]any `json:"properties"`
	}
	var widgets []widget
	add := func(title, stat string, metrics [][]any) {
		n := len(widgets)
		widgets = append(widgets, widget{Type: "metric", X: (n % 2) * 12, Y: (n / 2) * 6, Width: 12, Height: 6,
			Properties: map[string]any{"title": title, "region": cfg.Region, "stat": stat, "period": 60, "view": "timeSeries", "metrics": metrics}})
	}
	apiDims := []any{"ApiName", w.ApiName, "Stage", w.Stage}
	add("API requests and errors", "Sum", [][]any{
		append([]any{"AWS/ApiGateway", "Count"}, apiDims...),
		append([]any{"AWS/ApiGateway", "4XXError"}, apiDims...),
		append([]any{"AWS/ApiGateway", "5XXError"}, apiDims...),
		{"shopmesh/" + cfg.Stack, "Api429"},
	})
	add("API latency (p50, p99)", "p99", [][]any{
		append(append([]any{"AWS/ApiGateway", "Latency"}, apiDims...), map[string]any{"stat": "p50"}),
		append([]any{"AWS/ApiGateway", "Latency"}, apiDims...),
	})
	add("NLB targets", "Minimum", [][]any{
		{"AWS/NetworkELB", "HealthyHostCount", "LoadBalancer", lbSuffix, "TargetGroup", tgSuffix},
		{"AWS/NetworkELB", "UnHealthyHostCount", "LoadBalancer", lbSuffix, "TargetGroup", tgSuffix, map[string]any{"stat": "Maximum"}},
	})
	dbDims := []any{"DBInstanceIdentifier", w.DbInstance}
	add("Database", "Average", [][]any{
		append([]any{"AWS/RDS", "CPUUtilization"}, dbDims...),
		append([]any{"AWS/RDS", "DatabaseConnections"}, dbDims...),
		append(append([]any{"AWS/RDS", "FreeStorageSpace"}, dbDims...), map[string]any{"yAxis": "right"}),
	})
	var restarts, cpu [][]any
	for _, svc := range Services {
		dims := []any{"ClusterName", w.ClusterName, "Namespace", Namespace, "PodName", svc}
		restarts = append(restarts, append([]any{"ContainerInsights", "pod_number_of_container_restarts"}, dims...))
		cpu = append(cpu, append([]any{"ContainerInsights", "pod_cpu_utilization"}, dims...))
	}
	add("Pod restarts per service", "Sum", restarts)
	add("Pod CPU per service (% of the node)", "Average", cpu)
	b, err := json.Marshal(map[string]any{"widgets": widgets})
	return string(b), err
}

// Logs is the stack's logs key and the log groups AWS services would otherwise create
// themselves, with no retention and no key: EKS's control-plane logs and RDS's PostgreSQL logs.
// It comes before the cluster and the database, which write into them.
type Logs struct {
	pulumi.ResourceState

	KeyArn      pulumi.StringOutput // encrypts every log group of the stack and the alarm topic
	EksLogGroup *cloudwatch.LogGroup
	DbLogGroup  *cloudwatch.LogGroup
}

// LogsArgs configure Logs.
type LogsArgs struct {
	Config       Config
	ClusterName  string // EKS writes to /aws/eks/<cluster>/cluster
	DbIdentifier string // RDS writes to /aws/rds/instance/<identifier>/postgresql
}

// NewLogs creates the key and the two log groups (EKS user guide, "Send control plane logs to
// CloudWatch Logs": the log group /aws/eks/<cluster-name>/cluster; RDS user guide, "Publishing
// PostgreSQL logs to Amazon CloudWatch Logs": /aws/rds/instance/<instance>/postgresql).
func NewLogs(ctx *pulumi.Context, name string, args LogsArgs, opts ...pulumi.ResourceOption) (*Logs, error) {
	cfg := args.Config
	l := &Logs{}
	if err := ctx.RegisterComponentResource("shopmesh:observability:Logs", name, l, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(l)
	caller, err := aws.GetCallerIdentity(ctx, nil, parent)
	if err != nil {
		return nil, err
	}
	// CloudWatch Logs encrypts a log group only with a key whose policy lets the Logs service
	// use it for that account's log groups; CloudWatch alarms publish to an encrypted topic
	// only when the key lets CloudWatch use it (CloudWatch Logs guide, "Encrypt log data in
	// CloudWatch Logs using AWS KMS"; SNS guide, "Enable compatibility between event sources
	// from AWS services and encrypted topics").
	policy, err := iam.GetPolicyDocument(ctx, &iam.GetPolicyDocumentArgs{Statements: []iam.GetPolicyDocumentStatement{
		{
			Sid:        pulumi.StringRef("AccountAdministers"),
			Actions:    []string{"kms:*"},
			Resources:  []string{"*"},
			Principals: []iam.GetPolicyDocumentStatementPrincipal{{Type: "AWS", Identifiers: []string{"arn:aws:iam::" + caller.AccountId + ":root"}}},
		},
		{
			Sid:        pulumi.StringRef("LogsEncryptThisAccountsLogGroups"),
			Actions:    []string{"kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"},
			Resources:  []string{"*"},
			Principals: []iam.GetPolicyDocumentStatementPrincipal{{Type: "Service", Identifiers: []string{"logs." + cfg.Region + ".amazonaws.com"}}},
			Conditions: []iam.GetPolicyDocumentStatementCondition{{Test: "ArnLike", Variable: "kms:EncryptionContext:aws:logs:arn",
				Values: []string{fmt.Sprintf("arn:aws:logs:%s:%s:log-group:*", cfg.Region, caller.AccountId)}}},
		},
		{
			Sid:        pulumi.StringRef("AlarmsPublishToTheEncryptedTopic"),
			Actions:    []string{"kms:Decrypt", "kms:GenerateDataKey*"},
			Resources:  []string{"*"},
			Principals: []iam.GetPolicyDocumentStatementPrincipal{{Type: "Service", Identifiers: []string{"cloudwatch.amazonaws.com"}}},
		},
	}}, parent)
	if err != nil {
		return nil, err
	}
	// The key was the observability component's: the alias keeps it, and what it encrypts.
	moved := pulumi.Aliases([]pulumi.Alias{{ParentURN: pulumi.URN(fmt.Sprintf("urn:pulumi:%s::%s::shopmesh:observability:Observability::observability",
		ctx.Stack(), ctx.Project()))}})
	key, err := kms.NewKey(ctx, "observability", &kms.KeyArgs{
		Description:       pulumi.String("CloudWatch Logs and alarm topic encryption for " + cfg.Name("observability")),
		EnableKeyRotation: pulumi.Bool(true),
		Policy:            pulumi.String(policy.Json),
		Tags:              cfg.Tags("observability"),
	}, parent, moved)
	if err != nil {
		return nil, err
	}
	l.KeyArn = key.Arn
	group := func(resName, logGroup, tag string) (*cloudwatch.LogGroup, error) {
		return cloudwatch.NewLogGroup(ctx, resName, &cloudwatch.LogGroupArgs{
			Name: pulumi.String(logGroup), RetentionInDays: pulumi.Int(cfg.LogRetentionDays), KmsKeyId: key.Arn, Tags: cfg.Tags(tag),
		}, parent)
	}
	if l.EksLogGroup, err = group(name+"-eks", "/aws/eks/"+args.ClusterName+"/cluster", "logs-eks"); err != nil {
		return nil, err
	}
	if l.DbLogGroup, err = group(name+"-postgres", "/aws/rds/instance/"+args.DbIdentifier+"/postgresql", "logs-postgres"); err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(l, pulumi.Map{"keyArn": l.KeyArn}); err != nil {
		return nil, err
	}
	return l, nil
}
