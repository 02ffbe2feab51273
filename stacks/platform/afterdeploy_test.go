package platform

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// policyStatement is one statement of an IAM policy document input.
type policyStatement struct {
	Sid       string
	Effect    string
	Principal any
	Action    any
	Resource  any
	Condition map[string]map[string]any
}

func statements(t *testing.T, doc any) []policyStatement {
	t.Helper()
	var d struct{ Statement []policyStatement }
	if err := json.Unmarshal([]byte(fmt.Sprint(doc)), &d); err != nil {
		t.Fatalf("policy %v: %v", doc, err)
	}
	return d.Statement
}

// TestDatabaseCredentialsAreReadAtRunTime: no password in the plan (so none in state or etcd);
// each data service's pods read their own login's secret through their own IRSA role, which may
// read that secret and nothing else; only the bootstrap Job reads the master user's.
func TestDatabaseCredentialsAreReadAtRunTime(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		if n := len(p.ByType("kubernetes:core/v1:Secret")); n != 0 {
			t.Errorf("%d Kubernetes Secrets: the database password must not be copied into one", n)
		}
		for _, call := range p.Invokes {
			if strings.HasPrefix(call.Token, "aws:secretsmanager/") {
				t.Errorf("the program reads %s: secret values would land in state", call.Token)
			}
		}
		for _, svc := range Services {
			var cm corev1.ConfigMap
			if err := decodeStrict(named(t, p, "kubernetes:core/v1:ConfigMap", svc).Inputs, &cm); err != nil {
				t.Fatal(err)
			}
			var sa corev1.ServiceAccount
			if err := decodeStrict(named(t, p, "kubernetes:core/v1:ServiceAccount", svc).Inputs, &sa); err != nil {
				t.Fatal(err)
			}
			roleArn := sa.Annotations["eks.amazonaws.com/role-arn"]
			if !dataServices[svc] {
				if cm.Data["DATABASE_URL"] != "" || cm.Data["DATABASE_SECRET_ARN"] != "" {
					t.Errorf("%s has database settings it does not need", svc)
				}
				if wantRole := map[string]string{"gateway": "gateway-cache"}[svc]; !strings.HasSuffix(roleArn, ":role/"+wantRole) || (wantRole == "" && roleArn != "") {
					t.Errorf("%s has AWS role %q, want %q", svc, roleArn, wantRole)
				}
				continue
			}
			u, err := url.Parse(cm.Data["DATABASE_URL"])
			if err != nil || u.User != nil || u.Query().Get("sslmode") != "verify-full" || u.Query().Get("sslrootcert") != RDSCABundle || u.Path != "/"+DatabaseName {
				t.Errorf("%s DATABASE_URL = %q (%v), want the server and database only, its certificate verified against the RDS bundle", svc, cm.Data["DATABASE_URL"], err)
			}
			own := named(t, p, "aws:secretsmanager/secret:Secret", svc+"-db")
			if own.Inputs["name"] != "shopmesh-"+p.Stack+"-db-"+svc || !strings.HasSuffix(cm.Data["DATABASE_SECRET_ARN"], "/"+fmt.Sprint(own.Inputs["name"])) ||
				strings.Contains(cm.Data["DATABASE_SECRET_ARN"], ":secret:rds!db-") || cm.Data["AWS_REGION"] != cfg.Region {
				t.Errorf("%s: DATABASE_SECRET_ARN %q, AWS_REGION %q, want its own login's secret and %s", svc, cm.Data["DATABASE_SECRET_ARN"], cm.Data["AWS_REGION"], cfg.Region)
			}
			if d := named(t, p, "kubernetes:apps/v1:Deployment", svc); !slices.Contains(d.Dependencies, named(t, p, "kubernetes:batch/v1:Job", BootstrapJob).URN) {
				t.Errorf("the %s Deployment does not wait for the bootstrap Job that makes its login", svc)
			}
			role := named(t, p, "aws:iam/role:Role", svc+"-db")
			if !strings.HasSuffix(roleArn, ":role/"+svc+"-db") {
				t.Errorf("%s service account role %q, want %s-db", svc, roleArn, svc)
			}
			st := trustStatement(t, role)
			if subs := st.Condition["StringEquals"]; !slices.ContainsFunc(mapValues(subs), func(v []string) bool {
				return len(v) == 1 && v[0] == "system:serviceaccount:"+Namespace+":"+svc
			}) {
				t.Errorf("%s-db role trusts %v, want only the service account %s/%s", svc, st.Condition, Namespace, svc)
			}
			grants := statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", svc+"-db").Inputs["policy"])
			if len(grants) != 1 || !slices.Equal(asStrings(grants[0].Action), []string{"secretsmanager:GetSecretValue"}) ||
				!slices.Equal(asStrings(grants[0].Resource), []string{cm.Data["DATABASE_SECRET_ARN"]}) {
				t.Errorf("%s-db may %+v, want GetSecretValue on the database secret only", svc, grants)
			}
		}
	})
}

func mapValues(m map[string][]string) [][]string {
	var out [][]string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestGatewayPortOnlyFromTheLoadBalancer: with the VPC CNI's policy agent on, the gateway's
// plaintext port admits the NLB's reserved addresses and nothing else, so no pod can bypass API
// Gateway's throttling and WAF.
func TestGatewayPortOnlyFromTheLoadBalancer(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		nlb := one(t, p, "aws:lb/loadBalancer:LoadBalancer")
		want := map[string]bool{}
		for i := range cfg.AzCount {
			want[fmt.Sprint(at(nlb.Inputs, fmt.Sprintf("subnetMappings.%d.privateIpv4Address", i)))+"/32"] = true
		}
		for _, r := range p.ByType("kubernetes:networking.k8s.io/v1:NetworkPolicy") {
			var np networkingv1.NetworkPolicy
			if err := decodeStrict(r.Inputs, &np); err != nil {
				t.Fatal(err)
			}
			for _, rule := range np.Spec.Ingress {
				reachesGateway := len(rule.Ports) == 0
				for _, port := range rule.Ports {
					reachesGateway = reachesGateway || port.Port != nil && port.Port.IntValue() == ContainerPort
				}
				if !reachesGateway || (np.Spec.PodSelector.MatchLabels["app"] != "gateway" && len(np.Spec.PodSelector.MatchLabels) != 0) {
					continue
				}
				for _, peer := range rule.From {
					if peer.IPBlock != nil && !want[peer.IPBlock.CIDR] {
						t.Errorf("%s admits %s to the gateway's port %d; only the NLB's %v may", np.Name, peer.IPBlock.CIDR, ContainerPort, want)
					}
				}
			}
		}
		gw := named(t, p, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "allow-gateway")
		var np networkingv1.NetworkPolicy
		if err := decodeStrict(gw.Inputs, &np); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, peer := range np.Spec.Ingress[0].From {
			if peer.IPBlock != nil {
				got[peer.IPBlock.CIDR] = true
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("gateway ingress from %v, want the NLB's %v", got, want)
		}
	})
}

// TestAutoscalingScales: in prod the HPAs have metrics, the nodes have an autoscaler that may
// scale only this cluster's groups, pulumi up leaves the desired size to it, and every
// disruption budget lets a node drain.
func TestAutoscalingScales(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		metrics := named(t, p, "aws:eks/addon:Addon", "cluster-metrics-server")
		nodes := one(t, p, "aws:eks/nodeGroup:NodeGroup")
		if metrics.Inputs["addonName"] != "metrics-server" || !slices.Contains(metrics.Dependencies, nodes.URN) {
			t.Errorf("metrics-server add-on %v, want it after the node group", metrics.Inputs)
		}
		var release Resource
		for _, r := range p.ByType("kubernetes:helm.sh/v3:Release") {
			if r.Name == "cluster-autoscaler" {
				release = r
			}
		}
		if !cfg.Autoscaling {
			if release.URN != "" || len(nodes.IgnoreChanges) != 0 {
				t.Errorf("a fixed-size stack has a Cluster Autoscaler (%v) or ignores node group changes (%v)", release.URN != "", nodes.IgnoreChanges)
			}
			return
		}
		if !slices.Equal(nodes.IgnoreChanges, []string{"scalingConfig.desiredSize"}) {
			t.Errorf("node group ignoreChanges = %v, want scalingConfig.desiredSize (the autoscaler's)", nodes.IgnoreChanges)
		}
		if release.URN == "" || at(release.Inputs, "values.autoDiscovery.clusterName") != "shopmesh-"+p.Stack+"-eks" ||
			at(release.Inputs, "values.image") != nil || !slices.Contains(autoscalerCharts[cfg.ClusterVersion], fmt.Sprint(release.Inputs["version"])) ||
			!strings.Contains(fmt.Sprint(at(release.Inputs, "values.rbac.serviceAccount.annotations")), "eks.amazonaws.com/role-arn:arn:aws:iam::"+fakeAccount+":role/cluster-autoscaler") {
			t.Errorf("Cluster Autoscaler release = %v", release.Inputs)
		}
		for _, st := range statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler").Inputs["policy"]) {
			for _, action := range asStrings(st.Action) {
				mutating := !strings.Contains(action, ":Describe") && !strings.Contains(action, ":Get")
				tag := st.Condition["StringEquals"]["aws:ResourceTag/k8s.io/cluster-autoscaler/shopmesh-"+p.Stack+"-eks"]
				if mutating && fmt.Sprint(tag) != "owned" && fmt.Sprint(tag) != "[owned]" {
					t.Errorf("the autoscaler may %s on groups not tagged for this cluster: %+v", action, st)
				}
			}
		}
		minReplicas := map[string]int32{}
		for _, r := range p.ByType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler") {
			var h autoscalingv2.HorizontalPodAutoscaler
			if err := decodeStrict(r.Inputs, &h); err != nil {
				t.Fatal(err)
			}
			minReplicas[h.Spec.ScaleTargetRef.Name] = *h.Spec.MinReplicas
		}
		for _, r := range p.ByType("kubernetes:policy/v1:PodDisruptionBudget") {
			var pdb policyv1.PodDisruptionBudget
			if err := decodeStrict(r.Inputs, &pdb); err != nil {
				t.Fatal(err)
			}
			// At the HPA's floor, the budget must still allow one eviction.
			allowed := 0
			switch {
			case pdb.Spec.MaxUnavailable != nil:
				allowed = pdb.Spec.MaxUnavailable.IntValue()
			case pdb.Spec.MinAvailable != nil:
				allowed = int(minReplicas[pdb.Name]) - pdb.Spec.MinAvailable.IntValue()
			}
			if allowed < 1 {
				t.Errorf("PDB %s allows %d evictions at %d replicas: a node drain would block", pdb.Name, allowed, minReplicas[pdb.Name])
			}
		}
	})
	// istiod's chart keeps one pod available: with one replica (dev) that blocks every drain.
	for stack, want := range map[string]bool{"dev": false, "prod": true} {
		istiod := named(t, planFor(t, stack), "kubernetes:helm.sh/v3:Release", "istiod")
		if got := at(istiod.Inputs, "values.global.defaultPodDisruptionBudget.enabled"); got != want {
			t.Errorf("%s: istiod PDB enabled = %v, want %v", stack, got, want)
		}
	}
}

// TestLoadBalancerControllerWebhookOff: the chart's Service webhook would fail every Service
// create while the controller is down, and the shop has no LoadBalancer Services for it to serve.
func TestLoadBalancerControllerWebhookOff(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		lbc := named(t, p, "kubernetes:helm.sh/v3:Release", "aws-load-balancer-controller")
		if at(lbc.Inputs, "values.enableServiceMutatorWebhook") != false {
			t.Errorf("enableServiceMutatorWebhook = %v, want false", at(lbc.Inputs, "values.enableServiceMutatorWebhook"))
		}
		for _, r := range p.ByType("kubernetes:core/v1:Service") {
			var svc corev1.Service
			if err := decodeStrict(r.Inputs, &svc); err != nil || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				t.Errorf("Service %s is %s (%v): it would need the webhook", r.Name, svc.Spec.Type, err)
			}
		}
	})
}

// TestCIRolesAreLeastPrivilege: the deploy role has the actions of the services the program
// uses (every AWS type and data source in both plans is covered) and no administrator policy;
// the preview role only reads, and cannot read secret values.
func TestCIRolesAreLeastPrivilege(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		for _, a := range p.ByType("aws:iam/rolePolicyAttachment:RolePolicyAttachment") {
			if strings.HasSuffix(fmt.Sprint(a.Inputs["policyArn"]), "/AdministratorAccess") {
				t.Errorf("%s attaches AdministratorAccess", a.Name)
			}
		}
		deploy := statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", "deploy").Inputs["policy"])
		allowed := func(action string) bool {
			for _, st := range deploy {
				for _, pattern := range asStrings(st.Action) {
					if ok, _ := path.Match(pattern, action); ok {
						return true
					}
				}
			}
			return false
		}
		var tokens []string
		for _, r := range p.Resources {
			tokens = append(tokens, r.Type)
		}
		for _, call := range p.Invokes {
			tokens = append(tokens, call.Token)
		}
		for _, token := range tokens {
			module, ok := awsModule(token)
			if !ok || module == "iam" {
				continue
			}
			if module == "index" { // provider-level functions, each one call
				if action, known := indexActions[token]; !known || !allowed(action) {
					t.Errorf("%s: the deploy role may not call it (%q)", token, action)
				}
				continue
			}
			prefixes, listed := DeployServices[module]
			if !listed {
				t.Errorf("%s: the deploy role has no actions for module %s", token, module)
				continue
			}
			for _, prefix := range prefixes {
				if !allowed(prefix + ":CreateSomething") {
					t.Errorf("%s: the deploy role may not use %s", token, prefix)
				}
			}
		}
		for _, st := range deploy {
			for _, action := range asStrings(st.Action) {
				if action == "*" || action == "iam:*" || strings.HasPrefix(action, "iam:") && strings.Contains(action, "User") || action == "iam:CreateAccessKey" {
					t.Errorf("deploy role may %s", action)
				}
				if action == "iam:PassRole" && st.Condition["StringEquals"]["iam:PassedToService"] == nil {
					t.Errorf("deploy role may pass roles to any service")
				}
			}
		}
		preview := statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", "preview").Inputs["policy"])
		// The preview role is a pull-request job's: nothing it may call returns secret-bearing data.
		for _, st := range preview {
			for _, action := range asStrings(st.Action) {
				for _, secret := range secretReads {
					if !iamMatch(action, secret) {
						continue
					}
					public := strings.HasPrefix(secret, "ssm:GetParameter")
					for _, r := range asStrings(st.Resource) {
						public = public && strings.Contains(r, ":parameter/aws/service/")
					}
					if !public {
						t.Errorf("preview role may %s (by %s on %v): it returns secret-bearing data", secret, action, st.Resource)
					}
				}
			}
		}
		// And it may make every lookup the program makes.
		previewMay := func(action, resource string) bool {
			for _, st := range preview {
				for _, pattern := range asStrings(st.Action) {
					if !iamMatch(pattern, action) {
						continue
					}
					for _, r := range asStrings(st.Resource) {
						if iamMatch(r, resource) {
							return true
						}
					}
				}
			}
			return false
		}
		for _, call := range p.Invokes {
			action, known := lookupActions[call.Token]
			resource := "*"
			if call.Token == "aws:ssm/getParameter:getParameter" {
				resource = "arn:aws:ssm:eu-west-1::parameter" + fmt.Sprint(call.Args["name"])
			}
			if known && !previewMay(action, resource) {
				t.Errorf("%s: the preview role may not %s on %s", call.Token, action, resource)
			}
		}
		for _, st := range preview {
			for _, action := range asStrings(st.Action) {
				_, verb, _ := strings.Cut(action, ":")
				verb = strings.ToLower(verb)
				read := strings.HasPrefix(verb, "describe") || strings.HasPrefix(verb, "list") || strings.HasPrefix(verb, "get")
				session := action == "ssm:StartSession" || action == "ssm:TerminateSession" || action == "ssm:ResumeSession"
				if !read && !session || strings.HasPrefix(action, "secretsmanager:Get") {
					t.Errorf("preview role may %s", action)
				}
				if action == "ssm:StartSession" && !strings.Contains(fmt.Sprint(st.Resource), "document/AWS-StartPortForwardingSessionToRemoteHost") &&
					!slices.Equal(asStrings(st.Condition["StringEquals"]["aws:ResourceTag/Name"]), []string{"shopmesh-" + p.Stack + "-api-tunnel"}) {
					t.Errorf("preview role may start sessions on %v, want only the stack's API tunnel", st.Resource)
				}
			}
		}
	})
}

// iamMatch matches as IAM does: * is any run of characters, slashes included; actions ignore case.
func iamMatch(pattern, s string) bool {
	re := "^" + strings.ReplaceAll(strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*"), `\?`, ".") + "$"
	return regexp.MustCompile("(?i)" + re).MatchString(s)
}

// secretReads are actions that return secret-bearing data: parameter values, log events,
// image layers and registry tokens, secret values, sampled requests with their headers, plain
// text from KMS.
var secretReads = []string{
	"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory",
	"logs:GetLogEvents", "logs:FilterLogEvents", "logs:GetLogRecord", "logs:StartQuery", "logs:GetQueryResults",
	"ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:GetAuthorizationToken",
	"secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue",
	"wafv2:GetSampledRequests", "kms:Decrypt", "rds:DownloadDBLogFilePortion", "eks:AccessKubernetesApi",
}

// lookupActions are the IAM actions behind the provider functions the program calls.
var lookupActions = map[string]string{
	"aws:index/getAvailabilityZones:getAvailabilityZones":       "ec2:DescribeAvailabilityZones",
	"aws:index/getCallerIdentity:getCallerIdentity":             "sts:GetCallerIdentity",
	"aws:ssm/getParameter:getParameter":                         "ssm:GetParameter",
	"aws:ecr/getImage:getImage":                                 "ecr:DescribeImages",
	"aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": "iam:GetOpenIDConnectProvider",
}

// indexActions are the IAM actions behind the aws provider's own functions (aws:index/…).
var indexActions = map[string]string{
	"aws:index/getAvailabilityZones:getAvailabilityZones": "ec2:DescribeAvailabilityZones",
	"aws:index/getCallerIdentity:getCallerIdentity":       "sts:GetCallerIdentity",
}

// awsModule is the module of an aws provider type or function token (aws:<module>/…).
func awsModule(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, "aws:")
	if !ok {
		return "", false
	}
	module, _, _ := strings.Cut(rest, "/")
	return module, true
}

// TestBootstrapJobMakesTheLogins: the Job runs the users image as `users bootstrap-db`, without a
// sidecar, hardened like every pod, with the master user's secret and a login secret per data
// service, and an IRSA role that may read the master secret and read and write those, no more.
func TestBootstrapJobMakesTheLogins(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		var job batchv1.Job
		if err := decodeStrict(named(t, p, "kubernetes:batch/v1:Job", BootstrapJob).Inputs, &job); err != nil {
			t.Fatal(err)
		}
		pod := job.Spec.Template.Spec
		c := pod.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if !strings.Contains(c.Image, "/users:") || !slices.Equal(c.Args, []string{"bootstrap-db"}) ||
			job.Spec.Template.Annotations["sidecar.istio.io/inject"] != "false" || pod.RestartPolicy != "OnFailure" ||
			c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("bootstrap Job: image %s, args %v, annotations %v, restart %s: want users bootstrap-db, no sidecar, hardened",
				c.Image, c.Args, job.Spec.Template.Annotations, pod.RestartPolicy)
		}
		var logins []string
		var secrets []string
		for _, svc := range sortedKeys(dataServices) {
			arn := fmt.Sprint(named(t, p, "aws:secretsmanager/secret:Secret", svc+"-db").Inputs["arn"])
			if arn == "<nil>" || arn == "" {
				arn = "arn:aws:secretsmanager:eu-west-1:" + fakeAccount + ":secret/shopmesh-" + p.Stack + "-db-" + svc
			}
			logins = append(logins, svc+"="+arn)
			secrets = append(secrets, arn)
		}
		if env["DATABASE_LOGINS"] != strings.Join(logins, ",") || !strings.Contains(env["DATABASE_SECRET_ARN"], ":secret:rds!db-") {
			t.Errorf("bootstrap env %v, want DATABASE_LOGINS %s and the master user's secret", env, strings.Join(logins, ","))
		}
		grants := statements(t, named(t, p, "aws:iam/rolePolicy:RolePolicy", BootstrapJob).Inputs["policy"])
		if len(grants) != 2 || !slices.Equal(asStrings(grants[0].Resource), []string{env["DATABASE_SECRET_ARN"]}) ||
			!slices.Equal(asStrings(grants[0].Action), []string{"secretsmanager:GetSecretValue"}) ||
			!slices.Equal(asStrings(grants[1].Resource), secrets) {
			t.Errorf("the bootstrap role may %+v, want to read the master secret and read and write the three login secrets", grants)
		}
	})
}

// TestImagesShipTheRDSCABundle: the certificate bundle the services verify RDS against is in
// every image, readable by the non-root user, where DATABASE_URL names it.
func TestImagesShipTheRDSCABundle(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := "ADD --chmod=444 " + RDSCABundleURL + " " + RDSCABundle; !strings.Contains(string(b), want) {
		t.Errorf("the Dockerfile does not add the RDS CA bundle: want the line %q", want)
	}
}
