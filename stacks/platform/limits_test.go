package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/shopmesh/shopmesh/services/gateway"
)

// TestGatewayLimitsAgreeWithAPIGateway parses the gateway's route file, as deployed in its
// ConfigMap, with the gateway's own loader, and checks each limit against the API Gateway
// throttle that comes from the same stack keys (API Gateway: totals per stage; the gateway: per
// client), and the login and sign-up limits per address.
func TestGatewayLimitsAgreeWithAPIGateway(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		var cm corev1.ConfigMap
		if err := decodeStrict(named(t, p, "kubernetes:core/v1:ConfigMap", "gateway-routes").Inputs, &cm); err != nil {
			t.Fatal(err)
		}
		table, err := gateway.ParseTable([]byte(cm.Data[path.Base(RoutesFile)]))
		if err != nil {
			t.Fatalf("the gateway refuses its route file: %v", err)
		}
		throttles := map[string][2]float64{}
		for _, ms := range p.ByType("aws:apigateway/methodSettings:MethodSettings") {
			throttles[ms.Inputs["methodPath"].(string)] = [2]float64{
				at(ms.Inputs, "settings.throttlingRateLimit").(float64), at(ms.Inputs, "settings.throttlingBurstLimit").(float64)}
		}
		for apiPath, policy := range map[string]string{"*/*": "default", "orders/POST": "orders-create"} {
			l := table.RateLimits[policy]
			if got := throttles[apiPath]; got != [2]float64{l.Rate, float64(l.Burst)} || l.By != gateway.LimitByClient {
				t.Errorf("API Gateway %s throttles at %v; the gateway's %q at %v/%d by %s: they must agree", apiPath, got, policy, l.Rate, l.Burst, l.By)
			}
		}
		for policy, want := range map[string]gateway.RateLimit{
			"login":  {Rate: float64(cfg.LoginPerMinute) / 60, Burst: cfg.LoginBurst, By: gateway.LimitByAddress},
			"signup": {Rate: float64(cfg.SignupPerMinute) / 60, Burst: cfg.SignupBurst, By: gateway.LimitByAddress},
		} {
			if got := table.RateLimits[policy]; math.Abs(got.Rate-want.Rate) > 1e-9 || got.Burst != want.Burst || got.By != want.By {
				t.Errorf("gateway limit %q = %+v, want %+v", policy, got, want)
			}
		}
		ns := "." + Namespace + ".svc.cluster.local"
		for method, want := range map[string]string{"POST /users/login": "users-login", "POST /users": "users-signup", "GET /users/me": "users",
			"GET /products/1": "products", "POST /orders": "orders-create", "GET /orders": "orders", "GET /.well-known/jwks.json": "jwks"} {
			m, pth, _ := strings.Cut(method, " ")
			r := table.Match(m, pth)
			if r == nil || r.Name != want || !strings.HasSuffix(r.Upstreams[0].URL, ns) {
				t.Errorf("%s routes to %+v, want route %s in namespace %s", method, r, want, Namespace)
			}
		}

		// The gateway reads the file at start-up: it is mounted where ROUTES_FILE says, and a change
		// to it changes the pod template, which rolls the pods.
		var env corev1.ConfigMap
		if err := decodeStrict(named(t, p, "kubernetes:core/v1:ConfigMap", "gateway").Inputs, &env); err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := decodeStrict(named(t, p, "kubernetes:apps/v1:Deployment", "gateway").Inputs, &d); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(cm.Data[path.Base(RoutesFile)]))
		mounted := slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.MountPath == path.Dir(env.Data["ROUTES_FILE"]) && m.ReadOnly
		})
		if env.Data["ROUTES_FILE"] != RoutesFile || !mounted || d.Spec.Template.Annotations["shopmesh.io/routes-sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("ROUTES_FILE %q, mounted %v, template hash %q: want the route file mounted read-only and its hash on the pods",
				env.Data["ROUTES_FILE"], mounted, d.Spec.Template.Annotations["shopmesh.io/routes-sha256"])
		}
		// The gateway's own configuration loader accepts what the cluster gives it.
		if _, err := gateway.LoadConfig(func(k string) string { return env.Data[k] }); err != nil {
			t.Errorf("the gateway refuses its ConfigMap: %v", err)
		}
	})
}

// TestRateLimitCacheIsSharedEncryptedAndPasswordless: one Valkey replication group, TLS and
// encryption at rest, in the private subnets, reachable from the nodes only; the gateway reaches
// it as an IAM-authenticated user through its own IRSA role, and no password exists anywhere.
func TestRateLimitCacheIsSharedEncryptedAndPasswordless(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		rg := one(t, p, "aws:elasticache/replicationGroup:ReplicationGroup")
		in := rg.Inputs
		if in["engine"] != "valkey" || in["transitEncryptionEnabled"] != true || in["transitEncryptionMode"] != "required" ||
			in["atRestEncryptionEnabled"] != true || in["kmsKeyId"] == nil || in["authToken"] != nil {
			t.Errorf("replication group %v: want Valkey, TLS required, encrypted at rest with a key, no auth token", in)
		}
		nodes := 1.0
		if cfg.Prod() {
			nodes = 2
		}
		if in["numCacheClusters"] != nodes || in["multiAzEnabled"] != (nodes > 1) || in["automaticFailoverEnabled"] != (nodes > 1) {
			t.Errorf("%v nodes, multi-AZ %v, failover %v; want %v", in["numCacheClusters"], in["multiAzEnabled"], in["automaticFailoverEnabled"], nodes)
		}
		subnets := one(t, p, "aws:elasticache/subnetGroup:SubnetGroup")
		if got := asStrings(subnets.Inputs["subnetIds"]); len(got) != cfg.AzCount || !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "private") }) {
			t.Errorf("cache subnets %v, want the %d private subnets", got, cfg.AzCount)
		}
		sg := named(t, p, "aws:ec2/securityGroup:SecurityGroup", "cache")
		ingress, _ := sg.Inputs["ingress"].([]any)
		egress, _ := sg.Inputs["egress"].([]any)
		if len(ingress) != 1 || at(ingress[0], "fromPort") != float64(CachePort) || len(asStrings(at(ingress[0], "securityGroups"))) != 1 ||
			at(ingress[0], "cidrBlocks") != nil || len(egress) != 0 {
			t.Errorf("cache security group ingress %v egress %v: want 6379 from the cluster's group only, no egress", ingress, egress)
		}

		user := one(t, p, "aws:elasticache/user:User")
		id, _ := user.Inputs["userId"].(string)
		if at(user.Inputs, "authenticationMode.type") != "iam" || user.Inputs["userName"] != id || strings.ToLower(id) != id ||
			user.Inputs["passwords"] != nil || user.Inputs["accessString"] != gateway.LimiterAccessString() {
			t.Errorf("cache user %v: want IAM authentication, user name = ID in lower case, no passwords, the gateway's access string (the limiter's keys and commands only)", user.Inputs)
		}
		group := one(t, p, "aws:elasticache/userGroup:UserGroup")
		if ids := asStrings(group.Inputs["userIds"]); !slices.Equal(ids, []string{id}) || !slices.Equal(asStrings(in["userGroupIds"]), []string{group.Inputs["userGroupId"].(string)}) {
			t.Errorf("user group %v on the replication group %v, want the gateway's user only", ids, in["userGroupIds"])
		}

		var env corev1.ConfigMap
		if err := decodeStrict(named(t, p, "kubernetes:core/v1:ConfigMap", "gateway").Inputs, &env); err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(env.Data["REDIS_URL"])
		if err != nil || u.Scheme != "rediss" || u.User.Username() != id || !strings.Contains(u.Host, in["replicationGroupId"].(string)) {
			t.Errorf("REDIS_URL %q: want rediss://%s@<the primary endpoint>", env.Data["REDIS_URL"], id)
		}
		if _, has := u.User.Password(); has || env.Data["REDIS_AUTH"] != "iam" || env.Data["REDIS_CACHE_NAME"] != in["replicationGroupId"] {
			t.Errorf("REDIS_URL with a password, or REDIS_AUTH %q / REDIS_CACHE_NAME %q not set for IAM", env.Data["REDIS_AUTH"], env.Data["REDIS_CACHE_NAME"])
		}
		// The gateway's own loader reads the ConfigMap as the pod will: the engine the stack
		// names is one it runs.
		gcfg, err := gateway.LoadConfig(func(k string) string { return env.Data[k] })
		if err != nil || gcfg.Engine != cfg.GatewayEngine || cfg.GatewayEngine == "" {
			t.Errorf("the gateway's config from its ConfigMap: engine %q (%v), want the stack's gatewayEngine %q", gcfg.Engine, err, cfg.GatewayEngine)
		}
		grants := statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", "gateway-cache").Inputs["policy"])
		userArn := ":user:" + id
		if len(grants) != 1 || !slices.Equal(asStrings(grants[0].Action), []string{"elasticache:Connect"}) ||
			!slices.Equal(asStrings(grants[0].Resource), []string{"arn:aws:elasticache:" + cfg.Region + ":" + fakeAccount + ":replicationgroup:" + in["replicationGroupId"].(string),
				"arn:aws:elasticache:" + cfg.Region + ":" + fakeAccount + userArn}) {
			t.Errorf("gateway-cache may %+v, want elasticache:Connect on the cache and its user only", grants)
		}
	})
}

// TestTerminationDrainsBeforeTheProcessStops: every Deployment sleeps in preStop while its
// endpoint is removed, then drains (SHUTDOWN_DRAIN) and finishes in-flight requests
// (SHUTDOWN_TIMEOUT); Istio's sidecar outlives all of that, and the grace period outlives it.
func TestTerminationDrainsBeforeTheProcessStops(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		for _, svc := range Services {
			var d appsv1.Deployment
			if err := decodeStrict(named(t, p, "kubernetes:apps/v1:Deployment", svc).Inputs, &d); err != nil {
				t.Fatal(err)
			}
			var env corev1.ConfigMap
			if err := decodeStrict(named(t, p, "kubernetes:core/v1:ConfigMap", svc).Inputs, &env); err != nil {
				t.Fatal(err)
			}
			c := d.Spec.Template.Spec.Containers[0]
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 1 {
				t.Errorf("%s: no preStop sleep", svc)
				continue
			}
			preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			drain, err1 := time.ParseDuration(env.Data["SHUTDOWN_DRAIN"])
			timeout, err2 := time.ParseDuration(env.Data["SHUTDOWN_TIMEOUT"])
			sidecar, err3 := time.ParseDuration(strings.TrimPrefix(d.Spec.Template.Annotations["proxy.istio.io/config"], "terminationDrainDuration: "))
			if err1 != nil || err2 != nil || err3 != nil || drain <= 0 {
				t.Errorf("%s: SHUTDOWN_DRAIN %q, SHUTDOWN_TIMEOUT %q, sidecar drain %q", svc, env.Data["SHUTDOWN_DRAIN"], env.Data["SHUTDOWN_TIMEOUT"],
					d.Spec.Template.Annotations["proxy.istio.io/config"])
				continue
			}
			grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			if !(preStop+drain+timeout <= sidecar && sidecar < grace) {
				t.Errorf("%s: preStop %v + drain %v + shutdown %v must fit in the sidecar's drain %v, and that in the grace period %v",
					svc, preStop, drain, timeout, sidecar, grace)
			}
			if env.Data["GOMEMLIMIT"] == "" {
				t.Errorf("%s: no GOMEMLIMIT under the %s limit", svc, c.Resources.Limits.Memory())
			}
		}
	})
}
