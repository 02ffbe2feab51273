package platform

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/shopmesh/shopmesh/services/gateway"
	"github.com/shopmesh/shopmesh/services/orders"
	"github.com/shopmesh/shopmesh/services/products"
	"github.com/shopmesh/shopmesh/services/users"
)

// TestAlarmsWakeSomeoneUp: every alarm tells the stack's topic when it fires and when it
// recovers, its threshold is the stack's, and the topic is encrypted with a key CloudWatch may use.
func TestAlarmsWakeSomeoneUp(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		topic := one(t, p, "aws:sns/topic:Topic")
		topicArn := "arn:aws:sns:" + cfg.Region + ":" + fakeAccount + ":topic/" + topic.Inputs["name"].(string)
		key := named(t, p, "aws:kms/key:Key", "observability")
		keyArn := "arn:aws:kms:" + cfg.Region + ":" + fakeAccount + ":key/observability"
		if topic.Inputs["kmsMasterKeyId"] != keyArn {
			t.Errorf("alarm topic key %v, want the observability key", topic.Inputs["kmsMasterKeyId"])
		}
		var cloudwatchMayUse bool
		for _, st := range statements(t, key.Inputs["policy"]) {
			if strings.Contains(fmt.Sprint(st.Principal), "cloudwatch.amazonaws.com") && slices.Contains(asStrings(st.Action), "kms:GenerateDataKey*") {
				cloudwatchMayUse = true
			}
		}
		if !cloudwatchMayUse {
			t.Error("the key's policy does not let CloudWatch publish to the encrypted topic")
		}
		thresholds := map[string]float64{
			cfg.Name("api-5xx-rate"): float64(cfg.Alarm5xxPercent), cfg.Name("api-latency-p99"): float64(cfg.AlarmLatencyP99Ms),
			cfg.Name("unhealthy-targets"): 0, cfg.Name("db-cpu"): float64(cfg.AlarmDbCpuPercent),
			cfg.Name("db-free-storage"): float64(cfg.DbAllocatedStorage) * (1 << 30) * float64(cfg.AlarmDbFreeStoragePercent) / 100,
		}
		for _, svc := range Services {
			thresholds[cfg.Name("restarts-"+svc)] = float64(cfg.AlarmPodRestarts)
		}
		alarms := p.ByType("aws:cloudwatch/metricAlarm:MetricAlarm")
		if len(alarms) != len(thresholds) {
			t.Errorf("%d alarms, want %d", len(alarms), len(thresholds))
		}
		for _, a := range alarms {
			name, _ := a.Inputs["name"].(string)
			want, ok := thresholds[name]
			if !ok || a.Inputs["threshold"] != want {
				t.Errorf("alarm %q threshold %v, want %v from the stack's configuration", name, a.Inputs["threshold"], want)
			}
			if !slices.Equal(asStrings(a.Inputs["alarmActions"]), []string{topicArn}) || !slices.Equal(asStrings(a.Inputs["okActions"]), []string{topicArn}) {
				t.Errorf("alarm %q actions %v / %v, want the topic %s on alarm and on recovery", name, a.Inputs["alarmActions"], a.Inputs["okActions"], topicArn)
			}
		}
	})
	// Subscriptions come from alarmEmails.
	p, err := PlanStack("../..", "prod", map[string]string{"imageTag": testImageTag, "alarmEmails": `["oncall@example.com","lead@example.com"]`}, Program)
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, s := range p.ByType("aws:sns/topicSubscription:TopicSubscription") {
		if s.Inputs["protocol"] != "email" {
			t.Errorf("subscription protocol %v", s.Inputs["protocol"])
		}
		endpoints = append(endpoints, s.Inputs["endpoint"].(string))
	}
	slices.Sort(endpoints)
	if !slices.Equal(endpoints, []string{"lead@example.com", "oncall@example.com"}) {
		t.Errorf("subscriptions %v, want the two configured addresses", endpoints)
	}
}

// TestDashboardShowsTheStack decodes the dashboard body and looks for each graph the runbook
// points at, with the stack's own dimensions.
func TestDashboardShowsTheStack(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		d := one(t, p, "aws:cloudwatch/dashboard:Dashboard")
		var body struct {
			Widgets []struct {
				Type       string
				Properties struct {
					Title   string
					Region  string
					Metrics [][]any
				}
			}
		}
		if err := json.Unmarshal([]byte(d.Inputs["dashboardBody"].(string)), &body); err != nil {
			t.Fatalf("dashboard body: %v", err)
		}
		var series []string
		for _, w := range body.Widgets {
			if w.Type != "metric" || w.Properties.Region != cfg.Region || w.Properties.Title == "" {
				t.Errorf("widget %+v", w)
			}
			for _, m := range w.Properties.Metrics {
				var parts []string
				for _, v := range m {
					if s, ok := v.(string); ok {
						parts = append(parts, s)
					}
				}
				series = append(series, strings.Join(parts, " "))
			}
		}
		lb := "net/" + named(t, p, "aws:lb/loadBalancer:LoadBalancer", "edge").Inputs["name"].(string) + "/0123456789abcdef"
		want := []string{
			"AWS/ApiGateway Count ApiName " + cfg.Name("api") + " Stage " + StageName,
			"AWS/ApiGateway 4XXError ApiName " + cfg.Name("api") + " Stage " + StageName,
			"AWS/ApiGateway 5XXError ApiName " + cfg.Name("api") + " Stage " + StageName,
			"shopmesh/" + cfg.Stack + " Api429",
			"AWS/ApiGateway Latency ApiName " + cfg.Name("api") + " Stage " + StageName,
			"AWS/NetworkELB HealthyHostCount LoadBalancer " + lb,
			"AWS/RDS CPUUtilization DBInstanceIdentifier " + cfg.Name("postgres"),
			"AWS/RDS DatabaseConnections DBInstanceIdentifier " + cfg.Name("postgres"),
			"AWS/RDS FreeStorageSpace DBInstanceIdentifier " + cfg.Name("postgres"),
		}
		for _, svc := range Services {
			want = append(want, "ContainerInsights pod_number_of_container_restarts ClusterName "+cfg.Name("eks")+" Namespace "+Namespace+" PodName "+svc,
				"ContainerInsights pod_cpu_utilization ClusterName "+cfg.Name("eks")+" Namespace "+Namespace+" PodName "+svc)
		}
		for _, w := range want {
			if !slices.ContainsFunc(series, func(s string) bool { return strings.HasPrefix(s, w) }) {
				t.Errorf("the dashboard has no %q", w)
			}
		}
		filter := one(t, p, "aws:cloudwatch/logMetricFilter:LogMetricFilter")
		if filter.Inputs["pattern"] != `{ $.status = "429" }` || at(filter.Inputs, "metricTransformation.name") != "Api429" {
			t.Errorf("429 metric filter %v", filter.Inputs)
		}
	})
}

// TestLogsAndTracesReachCloudWatch: container logs and metrics through the CloudWatch
// Observability add-on with its own IRSA role, log groups with the stack's retention and the
// key, and every service exporting traces to the agent, configured so that each service's own
// configuration loader accepts it.
func TestLogsAndTracesReachCloudWatch(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		keyArn := "arn:aws:kms:" + cfg.Region + ":" + fakeAccount + ":key/observability"
		for _, lg := range p.ByType("aws:cloudwatch/logGroup:LogGroup") {
			if lg.Inputs["retentionInDays"] != float64(cfg.LogRetentionDays) || lg.Inputs["kmsKeyId"] != keyArn {
				t.Errorf("log group %v: retention %v, key %v; want %d days and the observability key", lg.Inputs["name"], lg.Inputs["retentionInDays"], lg.Inputs["kmsKeyId"], cfg.LogRetentionDays)
			}
		}
		for _, g := range containerLogGroups {
			named(t, p, "aws:cloudwatch/logGroup:LogGroup", "observability-"+g)
		}
		var addon Resource
		for _, a := range p.ByType("aws:eks/addon:Addon") {
			if a.Inputs["addonName"] == "amazon-cloudwatch-observability" {
				addon = a
			}
		}
		if addon.Inputs == nil || addon.Inputs["serviceAccountRoleArn"] != "arn:aws:iam::"+fakeAccount+":role/observability-agent" {
			t.Fatalf("CloudWatch add-on %v: want it with the agent's IRSA role", addon.Inputs)
		}
		st := trustStatement(t, named(t, p, "aws:iam/role:Role", "observability-agent"))
		if subs := st.Condition["StringEquals"]; !slices.ContainsFunc(mapValues(subs), func(v []string) bool {
			return slices.Equal(v, []string{"system:serviceaccount:amazon-cloudwatch:cloudwatch-agent"})
		}) {
			t.Errorf("agent role trusts %v", st.Condition)
		}
		var managed []string
		for _, a := range p.ByType("aws:iam/rolePolicyAttachment:RolePolicyAttachment") {
			if strings.HasPrefix(a.Name, "observability-agent-") {
				managed = append(managed, a.Inputs["policyArn"].(string))
			}
		}
		slices.Sort(managed)
		if !slices.Equal(managed, []string{"arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess", "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"}) {
			t.Errorf("agent role policies %v", managed)
		}
		for _, dep := range []string{"cluster-nodes", "observability-application"} {
			if !slices.ContainsFunc(addon.Dependencies, func(u string) bool { return strings.HasSuffix(u, "::"+dep) }) {
				t.Errorf("the add-on does not wait for %s: %v", dep, addon.Dependencies)
			}
		}

		loaders := map[string]func(func(string) string) error{
			"gateway":  func(g func(string) string) error { _, err := gateway.LoadConfig(g); return err },
			"users":    func(g func(string) string) error { _, err := users.LoadConfig(g); return err },
			"products": func(g func(string) string) error { _, err := products.LoadConfig(g); return err },
			"orders":   func(g func(string) string) error { _, err := orders.LoadConfig(g); return err },
		}
		for _, svc := range Services {
			var cm corev1.ConfigMap
			if err := decodeStrict(named(t, p, "kubernetes:core/v1:ConfigMap", svc).Inputs, &cm); err != nil {
				t.Fatal(err)
			}
			ratio, _ := strconv.ParseFloat(cm.Data["OTEL_TRACES_SAMPLER_ARG"], 64)
			if cm.Data["OTEL_EXPORTER_OTLP_ENDPOINT"] != OTLPEndpoint || cm.Data["OTEL_TRACES_SAMPLER"] != "parentbased_traceidratio" ||
				ratio != float64(cfg.TraceSamplePercent)/100 {
				t.Errorf("%s tracing: %v", svc, cm.Data)
			}
			if err := loaders[svc](func(k string) string { return cm.Data[k] }); err != nil {
				t.Errorf("%s refuses its ConfigMap: %v", svc, err)
			}
		}
		var np networkingv1.NetworkPolicy
		if err := decodeStrict(named(t, p, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "allow-dns-and-mesh").Inputs, &np); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(np.Spec.Egress, func(r networkingv1.NetworkPolicyEgressRule) bool {
			return len(r.To) == 1 && r.To[0].NamespaceSelector != nil && r.To[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == cloudWatchNamespace &&
				len(r.Ports) == 1 && r.Ports[0].Port.IntValue() == OTLPPort
		}) {
			t.Errorf("no egress to the CloudWatch agent's OTLP port: %+v", np.Spec.Egress)
		}
	})
}

// TestServiceLogGroupsHaveRetentionAndKey: EKS's control-plane logs and RDS's PostgreSQL logs go
// to log groups the program creates first, with the stack's retention and key; otherwise the
// services create them at first write, kept forever and unencrypted by the stack's key.
func TestServiceLogGroupsHaveRetentionAndKey(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		key := named(t, p, "aws:kms/key:Key", "observability")
		for _, tt := range []struct{ res, logGroup, writer string }{
			{"logs-eks", "/aws/eks/shopmesh-" + p.Stack + "-eks/cluster", "eks:index:Cluster"},
			{"logs-postgres", "/aws/rds/instance/shopmesh-" + p.Stack + "-postgres/postgresql", "aws:rds/instance:Instance"},
		} {
			g := named(t, p, "aws:cloudwatch/logGroup:LogGroup", tt.res)
			if g.Inputs["name"] != tt.logGroup || g.Inputs["retentionInDays"] != float64(cfg.LogRetentionDays) ||
				!strings.Contains(fmt.Sprint(g.Inputs["kmsKeyId"]), key.Name) {
				t.Errorf("%s = %v, want %s with %d days and the stack's logs key", tt.res, g.Inputs, tt.logGroup, cfg.LogRetentionDays)
			}
			if w := one(t, p, tt.writer); !slices.Contains(w.Dependencies, g.URN) {
				t.Errorf("%s does not wait for %s: it would create the log group itself", tt.writer, tt.logGroup)
			}
		}
	})
}
