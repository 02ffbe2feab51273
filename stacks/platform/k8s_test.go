package platform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// upstream maps each Kubernetes kind the program declares to its upstream Go type.
var upstream = map[string]func() any{
	"kubernetes:core/v1:Namespace":                        func() any { return &corev1.Namespace{} },
	"kubernetes:core/v1:ServiceAccount":                   func() any { return &corev1.ServiceAccount{} },
	"kubernetes:core/v1:ConfigMap":                        func() any { return &corev1.ConfigMap{} },
	"kubernetes:core/v1:Secret":                           func() any { return &corev1.Secret{} },
	"kubernetes:core/v1:Service":                          func() any { return &corev1.Service{} },
	"kubernetes:apps/v1:Deployment":                       func() any { return &appsv1.Deployment{} },
	"kubernetes:batch/v1:Job":                             func() any { return &batchv1.Job{} },
	"kubernetes:autoscaling/v2:HorizontalPodAutoscaler":   func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"kubernetes:policy/v1:PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"kubernetes:networking.k8s.io/v1:NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
	"kubernetes:security.istio.io/v1:PeerAuthentication":  func() any { return &peerAuthentication{} },
	"kubernetes:security.istio.io/v1:AuthorizationPolicy": func() any { return &authorizationPolicy{} },
	"kubernetes:networking.istio.io/v1:DestinationRule":   func() any { return &destinationRule{} },
	"kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding": func() any { return &targetGroupBinding{} },
}

// The custom resources are checked against the fields of their CRDs that the program uses
// (Istio's and the Load Balancer Controller's Go types are not dependencies of this module).
type crMeta struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Metadata   corev1ObjectMeta `json:"metadata"`
}
type corev1ObjectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}
type selector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}
type peerAuthentication struct {
	crMeta
	Spec struct {
		Selector      *selector                        `json:"selector,omitempty"`
		Mtls          struct{ Mode string }            `json:"mtls"`
		PortLevelMtls map[string]struct{ Mode string } `json:"portLevelMtls,omitempty"`
	} `json:"spec"`
}
type authorizationPolicy struct {
	crMeta
	Spec struct {
		Selector selector `json:"selector"`
		Action   string   `json:"action"`
		Rules    []struct {
			From []struct {
				Source struct {
					Principals []string `json:"principals"`
				} `json:"source"`
			} `json:"from,omitempty"`
			To []struct {
				Operation struct {
					Ports []string `json:"ports"`
				} `json:"operation"`
			} `json:"to,omitempty"`
		} `json:"rules"`
	} `json:"spec"`
}
type destinationRule struct {
	crMeta
	Spec struct {
		Host          string `json:"host"`
		TrafficPolicy struct {
			TLS struct{ Mode string } `json:"tls"`
		} `json:"trafficPolicy"`
	} `json:"spec"`
}
type targetGroupBinding struct {
	crMeta
	Spec struct {
		ServiceRef struct {
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"serviceRef"`
		TargetGroupARN string `json:"targetGroupARN"`
		TargetType     string `json:"targetType"`
	} `json:"spec"`
}

// decodeStrict decodes inputs into v, refusing unknown fields and wrong types.
func decodeStrict(inputs map[string]any, v any) error {
	b, err := json.Marshal(inputs)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func kubernetesObjects(p *Plan) []Resource {
	var out []Resource
	for _, r := range p.Resources {
		if strings.HasPrefix(r.Type, "kubernetes:") && r.Type != "kubernetes:helm.sh/v3:Release" {
			out = append(out, r)
		}
	}
	return out
}

func TestKubernetesObjectsDecodeStrictly(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		decoded := 0
		for _, r := range kubernetesObjects(p) {
			newObj, ok := upstream[r.Type]
			if !ok {
				t.Errorf("%s %s: no upstream type to check it against; add it to the table", r.Type, r.Name)
				continue
			}
			obj := newObj()
			if err := decodeStrict(r.Inputs, obj); err != nil {
				t.Errorf("%s %s does not decode into %T: %v", r.Type, r.Name, obj, err)
				continue
			}
			kind := reflect.ValueOf(obj).Elem().FieldByName("Kind")
			if !kind.IsValid() {
				kind = reflect.ValueOf(obj).Elem().FieldByName("crMeta").FieldByName("Kind")
			}
			if want := r.Type[strings.LastIndex(r.Type, ":")+1:]; kind.String() != want {
				t.Errorf("%s %s: kind %q, want %q", r.Type, r.Name, kind.String(), want)
			}
			decoded++
		}
		if want := len(kubernetesObjects(p)); decoded != want || decoded < 30 {
			t.Errorf("decoded %d of %d Kubernetes objects", decoded, want)
		}
	})
}

// The strict decoder is itself able to fail.
func TestDecodeStrictRejectsUnknownFieldsAndWrongTypes(t *testing.T) {
	for _, bad := range []map[string]any{
		{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{"replica": 2}},
		{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{"replicas": "two"}},
	} {
		if err := decodeStrict(bad, &appsv1.Deployment{}); err == nil {
			t.Errorf("decodeStrict accepted %v", bad)
		}
	}
}

func TestKubernetesResourcesUseTheClusterProvider(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		objs := append(kubernetesObjects(p), p.ByType("kubernetes:helm.sh/v3:Release")...)
		for _, r := range objs {
			if !strings.Contains(r.Provider, "pulumi:providers:kubernetes::cluster") {
				t.Errorf("%s %s uses provider %q, want the cluster's explicit provider", r.Type, r.Name, r.Provider)
			}
		}
		if len(objs) < 30 {
			t.Errorf("checked %d Kubernetes resources", len(objs))
		}
	})
}

func TestDeploymentsAreHardened(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, cfg Config) {
		deployments := p.ByType("kubernetes:apps/v1:Deployment")
		if len(deployments) != len(Services) {
			t.Fatalf("%d deployments, want %d", len(deployments), len(Services))
		}
		for _, r := range deployments {
			var d appsv1.Deployment
			if err := decodeStrict(r.Inputs, &d); err != nil {
				t.Fatal(err)
			}
			pod := d.Spec.Template.Spec
			// Autoscaled Deployments leave replicas to their HPA (whose floor is cfg.Replicas).
			switch {
			case cfg.Autoscaling && d.Spec.Replicas != nil:
				t.Errorf("%s sets replicas %d: every pulumi up would undo its HPA", r.Name, *d.Spec.Replicas)
			case !cfg.Autoscaling && (d.Spec.Replicas == nil || int(*d.Spec.Replicas) != cfg.Replicas):
				t.Errorf("%s replicas = %v, want %d", r.Name, d.Spec.Replicas, cfg.Replicas)
			}
			if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
				t.Errorf("%s pod may run as root", r.Name)
			}
			if len(pod.TopologySpreadConstraints) == 0 {
				t.Errorf("%s has no topology spread", r.Name)
			}
			for _, c := range pod.Containers {
				sc := c.SecurityContext
				switch {
				case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("%s/%s root filesystem is writable", r.Name, c.Name)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("%s/%s allows privilege escalation", r.Name, c.Name)
				case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
					t.Errorf("%s/%s keeps Linux capabilities", r.Name, c.Name)
				}
				if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					t.Errorf("%s/%s probes = %v / %v", r.Name, c.Name, c.LivenessProbe, c.ReadinessProbe)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s/%s lacks CPU requests or memory limits", r.Name, c.Name)
				}
				// The stack's own repository, at imageTag, pinned to the digest ECR reports for it.
				if !pinnedImage.MatchString(c.Image) || !strings.Contains(c.Image, ".dkr.ecr.") ||
					!strings.Contains(c.Image, "/shopmesh/"+p.Stack+"/"+r.Name+":"+testImageTag+"@sha256:") {
					t.Errorf("%s/%s image = %s, want its ECR repository at imageTag, by digest", r.Name, c.Name, c.Image)
				}
			}
		}
		hpas, pdbs := p.ByType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"), p.ByType("kubernetes:policy/v1:PodDisruptionBudget")
		want := 0
		if cfg.Autoscaling {
			want = len(Services)
		}
		if len(hpas) != want || len(pdbs) != want {
			t.Errorf("%d HPAs and %d PDBs, want %d each", len(hpas), len(pdbs), want)
		}
	})
}

func TestMeshSecurity(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		var strict bool
		for _, r := range p.ByType("kubernetes:security.istio.io/v1:PeerAuthentication") {
			var pa peerAuthentication
			if err := decodeStrict(r.Inputs, &pa); err != nil {
				t.Fatal(err)
			}
			if pa.Metadata.Name == "default" && pa.Spec.Selector == nil && pa.Spec.Mtls.Mode == "STRICT" && pa.Metadata.Namespace == Namespace {
				strict = true
			}
			for port, mode := range pa.Spec.PortLevelMtls {
				if pa.Spec.Selector == nil || pa.Spec.Selector.MatchLabels["app"] != "gateway" || port != "8080" || mode.Mode != "PERMISSIVE" {
					t.Errorf("port-level mTLS exception %s=%s outside the gateway's ingress port", port, mode.Mode)
				}
			}
		}
		if !strict {
			t.Error("no namespace-wide STRICT PeerAuthentication in " + Namespace)
		}
		policies := map[string][]string{}
		for _, r := range p.ByType("kubernetes:security.istio.io/v1:AuthorizationPolicy") {
			var ap authorizationPolicy
			if err := decodeStrict(r.Inputs, &ap); err != nil {
				t.Fatal(err)
			}
			var principals []string
			for _, rule := range ap.Spec.Rules {
				for _, f := range rule.From {
					principals = append(principals, f.Source.Principals...)
				}
			}
			policies[ap.Spec.Selector.MatchLabels["app"]] = principals
		}
		for _, svc := range Services {
			got, ok := policies[svc]
			if !ok {
				t.Errorf("no AuthorizationPolicy for %s", svc)
				continue
			}
			var want []string
			for _, caller := range Callers[svc] {
				want = append(want, fmt.Sprintf("cluster.local/ns/%s/sa/%s", Namespace, caller))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s admits %v, want exactly %v", svc, got, want)
			}
		}
		for _, r := range p.ByType("kubernetes:networking.istio.io/v1:DestinationRule") {
			var dr destinationRule
			if err := decodeStrict(r.Inputs, &dr); err != nil || dr.Spec.TrafficPolicy.TLS.Mode != "ISTIO_MUTUAL" {
				t.Errorf("DestinationRule %s: %v %+v", r.Name, err, dr.Spec)
			}
		}
	})
}

func TestNetworkPolicies(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		byName := map[string]networkingv1.NetworkPolicy{}
		for _, r := range p.ByType("kubernetes:networking.k8s.io/v1:NetworkPolicy") {
			var np networkingv1.NetworkPolicy
			if err := decodeStrict(r.Inputs, &np); err != nil {
				t.Fatal(err)
			}
			byName[np.Name] = np
		}
		deny, ok := byName["default-deny"]
		if !ok || len(deny.Spec.PodSelector.MatchLabels) != 0 || len(deny.Spec.Ingress) != 0 || len(deny.Spec.Egress) != 0 || len(deny.Spec.PolicyTypes) != 2 {
			t.Errorf("default-deny = %+v, want all pods, both directions, no rules", deny.Spec)
		}
		// orders may reach products and users; products may not reach orders.
		egressTo := func(np networkingv1.NetworkPolicy) []string {
			var apps []string
			for _, rule := range np.Spec.Egress {
				for _, peer := range rule.To {
					if peer.PodSelector != nil {
						apps = append(apps, peer.PodSelector.MatchLabels["app"])
					}
				}
			}
			return apps
		}
		if got := egressTo(byName["allow-orders"]); !reflect.DeepEqual(got, []string{"users", "products"}) {
			t.Errorf("orders may call %v, want users and products", got)
		}
		if got := egressTo(byName["allow-products"]); !reflect.DeepEqual(got, []string{"users"}) {
			t.Errorf("products may call %v, want users (JWKS)", got)
		}
	})
}

func TestLoadBalancerControllerRole(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		var role Resource
		for _, r := range p.ByType("aws:iam/role:Role") {
			if r.Name == "lb-controller" {
				role = r
			}
		}
		st := trustStatement(t, role)
		var oidc Resource // the cluster's, not GitHub Actions' (the deploy role's)
		for _, r := range p.ByType("aws:iam/openIdConnectProvider:OpenIdConnectProvider") {
			if !strings.Contains(fmt.Sprint(r.Inputs["url"]), GithubOIDCIssuer) {
				oidc = r
			}
		}
		if st.Action[0] != "sts:AssumeRoleWithWebIdentity" || st.Principal["Federated"][0] != "arn:aws:iam::"+fakeAccount+":oidc-provider/"+strings.TrimPrefix(fmt.Sprint(oidc.Inputs["url"]), "https://") {
			t.Errorf("trust statement = %+v, want web identity from the cluster's OIDC provider", st)
		}
		found := false
		for variable, values := range st.Condition["StringEquals"] {
			if strings.HasSuffix(variable, ":sub") && !strings.HasPrefix(variable, "https://") {
				found = values[0] == "system:serviceaccount:kube-system:aws-load-balancer-controller"
			}
		}
		if !found {
			t.Errorf("trust policy does not pin the service account: %v", st.Condition)
		}
		var tgb targetGroupBinding
		if err := decodeStrict(one(t, p, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding").Inputs, &tgb); err != nil ||
			tgb.Spec.ServiceRef.Name != "gateway" || tgb.Spec.TargetType != "ip" || !strings.Contains(tgb.Spec.TargetGroupARN, "targetgroup") {
			t.Errorf("TargetGroupBinding = %+v (%v)", tgb.Spec, err)
		}
	})
}

// A namespace that enforces the restricted pod security standard admits Istio's sidecars only
// when the CNI plugin replaces the istio-init container (which needs NET_ADMIN and NET_RAW).
func TestRestrictedNamespaceRunsIstioInCNIMode(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		restricted := false
		for _, r := range p.ByType("kubernetes:core/v1:Namespace") {
			var ns corev1.Namespace
			if err := decodeStrict(r.Inputs, &ns); err != nil {
				t.Fatal(err)
			}
			if ns.Labels["pod-security.kubernetes.io/enforce"] == "restricted" && ns.Labels["istio-injection"] == "enabled" {
				restricted = true
			}
		}
		if !restricted {
			t.Fatal("no injected namespace enforces the restricted pod security standard")
		}
		releases := map[string]Resource{}
		for _, r := range p.ByType("kubernetes:helm.sh/v3:Release") {
			releases[fmt.Sprint(r.Inputs["name"])] = r
		}
		if _, ok := releases["istio-cni"]; !ok {
			t.Error("no istio-cni release")
		}
		if at(releases["istiod"].Inputs, "values.pilot.cni.enabled") != true {
			t.Errorf("istiod does not use the CNI plugin: %v", releases["istiod"].Inputs["values"])
		}
	})
}

var pinnedImage = regexp.MustCompile(`^[^@]+:[A-Za-z0-9_.-]+@sha256:[0-9a-f]{64}$`)

// TestGatewayPodsWaitForTheirReadinessGate: the shop's namespace asks the AWS Load Balancer
// Controller for readiness gates, and the gateway's Deployment is created after the
// controller and the TargetGroupBinding, whose webhook injects the gate when a pod is created:
// a rollout then keeps old gateway pods until the NLB reports their successors healthy.
func TestGatewayPodsWaitForTheirReadinessGate(t *testing.T) {
	forStacks(t, func(t *testing.T, p *Plan, _ Config) {
		var ns corev1.Namespace
		if err := decodeStrict(named(t, p, "kubernetes:core/v1:Namespace", "shop").Inputs, &ns); err != nil {
			t.Fatal(err)
		}
		if ns.Labels["elbv2.k8s.aws/pod-readiness-gate-inject"] != "enabled" {
			t.Errorf("namespace %s labels %v: want elbv2.k8s.aws/pod-readiness-gate-inject: enabled", ns.Name, ns.Labels)
		}
		deployment := named(t, p, "kubernetes:apps/v1:Deployment", "gateway")
		binding := named(t, p, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding", "gateway-target-group")
		if !slices.Contains(deployment.Dependencies, binding.URN) {
			t.Errorf("the gateway Deployment depends on %v; want the TargetGroupBinding %s among them", deployment.Dependencies, binding.URN)
		}
		var release Resource
		for _, r := range p.ByType("kubernetes:helm.sh/v3:Release") {
			if r.Inputs["name"] == "aws-load-balancer-controller" {
				release = r
			}
		}
		if !slices.Contains(binding.Dependencies, release.URN) || release.URN == "" {
			t.Errorf("the TargetGroupBinding depends on %v; want the controller's release %q", binding.Dependencies, release.URN)
		}
	})
}
