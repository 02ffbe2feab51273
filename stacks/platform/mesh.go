package platform

import (
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/shopmesh/shopmesh/services/pki"
)

// Mesh is Istio (AWS App Mesh reached end of support on 2026-09-30): the control plane from
// its Helm charts, the application namespace with sidecar injection, namespace-wide STRICT
// mTLS, an AuthorizationPolicy per service, and ISTIO_MUTUAL destination rules.
type Mesh struct {
	pulumi.ResourceState

	Namespace string
	Ready     []pulumi.Resource // what workloads must wait for: istiod and the namespace
}

// MeshArgs configures a Mesh.
type MeshArgs struct {
	Config    Config
	Provider  *kubernetes.Provider
	Namespace string
}

// Callers lists, for each service, the workloads allowed to call it. The gateway is the entry
// point: it admits traffic from the NLB and forwards to the three services; orders asks
// products and users; products fetches the users JWKS to verify admin tokens. The list is the
// one the services enforce themselves when they run their own mTLS (pki.AllowedCallers).
var Callers = map[string][]string{
	"gateway":  nil, // reached from outside the mesh; see the port-level exception below
	"users":    pki.AllowedCallers("users"),
	"products": pki.AllowedCallers("products"),
	"orders":   pki.AllowedCallers("orders"),
}

// ContainerPort is the port every service listens on in the cluster.
const ContainerPort = 8080

// SidecarInboundSources are the addresses Istio's sidecar connects to the application from, for
// every inbound connection (istio/istio, pilot/pkg/networking/util: InboundPassthroughBindIpv4
// and Ipv6). Its inbound HTTP listener does not use the remote address (useRemoteAddress false in
// the sidecar's inbound options), so it leaves X-Forwarded-For as it came.
var SidecarInboundSources = []string{"127.0.0.6/32", "::6/128"}

const istioRepo = "https://istio-release.storage.googleapis.com/charts"

// NewMesh installs Istio and the mesh security policy.
func NewMesh(ctx *pulumi.Context, name string, args MeshArgs, opts ...pulumi.ResourceOption) (*Mesh, error) {
	m := &Mesh{Namespace: args.Namespace}
	if err := ctx.RegisterComponentResource("shopmesh:mesh:Mesh", name, m, opts...); err != nil {
		return nil, err
	}
	cfg := args.Config
	k8s := []pulumi.ResourceOption{pulumi.Parent(m), pulumi.Provider(args.Provider)}

	system, err := corev1.NewNamespace(ctx, "istio-system", &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("istio-system")},
	}, k8s...)
	if err != nil {
		return nil, err
	}
	base, err := helmv3.NewRelease(ctx, "istio-base", &helmv3.ReleaseArgs{
		Name:           pulumi.String("istio-base"),
		Chart:          pulumi.String("base"),
		Version:        pulumi.String(cfg.IstioVersion),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String(istioRepo)},
		Namespace:      system.Metadata.Name().Elem(),
		Values:         pulumi.Map{"defaultRevision": pulumi.String("default")},
	}, k8s...)
	if err != nil {
		return nil, err
	}
	// The CNI plugin sets up traffic redirection on the node, so injected pods need no
	// istio-init container with NET_ADMIN/NET_RAW, and the namespace can enforce the
	// "restricted" pod security standard.
	cni, err := helmv3.NewRelease(ctx, "istio-cni", &helmv3.ReleaseArgs{
		Name:           pulumi.String("istio-cni"),
		Chart:          pulumi.String("cni"),
		Version:        pulumi.String(cfg.IstioVersion),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String(istioRepo)},
		Namespace:      system.Metadata.Name().Elem(),
	}, append(k8s, pulumi.DependsOn([]pulumi.Resource{base}))...)
	if err != nil {
		return nil, err
	}
	istiod, err := helmv3.NewRelease(ctx, "istiod", &helmv3.ReleaseArgs{
		Name:           pulumi.String("istiod"),
		Chart:          pulumi.String("istiod"),
		Version:        pulumi.String(cfg.IstioVersion),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String(istioRepo)},
		Namespace:      system.Metadata.Name().Elem(),
		Values: pulumi.Map{
			"meshConfig": pulumi.Map{"accessLogFile": pulumi.String("/dev/stdout")},
			// The chart's PDB keeps one istiod available: with a single replica it would block
			// every node drain (node group updates, scale-down).
			"global": pulumi.Map{"defaultPodDisruptionBudget": pulumi.Map{"enabled": pulumi.Bool(replicasFor(cfg, 2) >= 2)}},
			"pilot": pulumi.Map{"autoscaleMin": pulumi.Int(replicasFor(cfg, 2)), "cni": pulumi.Map{"enabled": pulumi.Bool(true)},
				"resources": pulumi.Map{"requests": pulumi.Map{"cpu": pulumi.String("200m"), "memory": pulumi.String("512Mi")}}},
		},
	}, append(k8s, pulumi.DependsOn([]pulumi.Resource{base, cni}))...)
	if err != nil {
		return nil, err
	}
	ns, err := corev1.NewNamespace(ctx, args.Namespace, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(args.Namespace),
			Labels: pulumi.StringMap{
				"istio-injection":                    pulumi.String("enabled"),
				"app.kubernetes.io/part-of":          pulumi.String("shopmesh"),
				"pod-security.kubernetes.io/enforce": pulumi.String("restricted"),
				// The AWS Load Balancer Controller's webhook gives the gateway's pods a readiness
				// gate that holds until the NLB reports them healthy, so that a rollout retires
				// no old pod before its successor takes traffic (its guide, "Pod readiness gate":
				// the label goes on the pods' namespace; IP targets only, as here).
				"elbv2.k8s.aws/pod-readiness-gate-inject": pulumi.String("enabled"),
			},
		},
	}, append(k8s, pulumi.DependsOn([]pulumi.Resource{istiod}))...)
	if err != nil {
		return nil, err
	}

	// Istio's CRDs come with the base chart.
	crd := append(k8s, pulumi.DependsOn([]pulumi.Resource{base, ns}))
	istio := func(kind, objName string, spec pulumi.Map) error {
		_, err := apiextensions.NewCustomResource(ctx, kind+"-"+objName, &apiextensions.CustomResourceArgs{
			ApiVersion:  pulumi.String(istioAPIVersion(kind)),
			Kind:        pulumi.String(kind),
			Metadata:    &metav1.ObjectMetaArgs{Name: pulumi.String(objName), Namespace: pulumi.String(args.Namespace)},
			OtherFields: kubernetes.UntypedArgs{"spec": spec},
		}, crd...)
		return err
	}
	if err := istio("PeerAuthentication", "default", pulumi.Map{"mtls": pulumi.Map{"mode": pulumi.String("STRICT")}}); err != nil {
		return nil, err
	}
	// The NLB sends plain TCP to the gateway's pods: only that port accepts it.
	if err := istio("PeerAuthentication", "gateway-ingress", pulumi.Map{
		"selector":      pulumi.Map{"matchLabels": pulumi.StringMap{"app": pulumi.String("gateway")}},
		"mtls":          pulumi.Map{"mode": pulumi.String("STRICT")},
		"portLevelMtls": pulumi.Map{itoa(ContainerPort): pulumi.Map{"mode": pulumi.String("PERMISSIVE")}},
	}); err != nil {
		return nil, err
	}
	for _, svc := range Services {
		if err := istio("AuthorizationPolicy", svc, authorizationSpec(args.Namespace, svc)); err != nil {
			return nil, err
		}
		if err := istio("DestinationRule", svc, pulumi.Map{
			"host":          pulumi.String(svc + "." + args.Namespace + ".svc.cluster.local"),
			"trafficPolicy": pulumi.Map{"tls": pulumi.Map{"mode": pulumi.String("ISTIO_MUTUAL")}},
		}); err != nil {
			return nil, err
		}
	}

	m.Ready = []pulumi.Resource{istiod, ns}
	if err := ctx.RegisterResourceOutputs(m, pulumi.Map{"namespace": pulumi.String(args.Namespace)}); err != nil {
		return nil, err
	}
	return m, nil
}

// authorizationSpec allows exactly the callers in Callers (and health probes, which the
// sidecar rewrites to come from the kubelet through its own port).
func authorizationSpec(namespace, svc string) pulumi.Map {
	selector := pulumi.Map{"matchLabels": pulumi.StringMap{"app": pulumi.String(svc)}}
	if svc == "gateway" {
		// Entry point: anyone may reach its service port; the gateway checks tokens itself.
		return pulumi.Map{"selector": selector, "action": pulumi.String("ALLOW"), "rules": pulumi.Array{
			pulumi.Map{"to": pulumi.Array{pulumi.Map{"operation": pulumi.Map{"ports": pulumi.StringArray{pulumi.String(itoa(ContainerPort))}}}}},
		}}
	}
	var principals pulumi.StringArray
	for _, caller := range Callers[svc] {
		principals = append(principals, pulumi.String("cluster.local/ns/"+namespace+"/sa/"+caller))
	}
	return pulumi.Map{"selector": selector, "action": pulumi.String("ALLOW"), "rules": pulumi.Array{
		pulumi.Map{"from": pulumi.Array{pulumi.Map{"source": pulumi.Map{"principals": principals}}}},
	}}
}

func istioAPIVersion(kind string) string {
	if kind == "DestinationRule" {
		return "networking.istio.io/v1"
	}
	return "security.istio.io/v1"
}

// replicasFor is n in prod and 1 elsewhere, for system components.
func replicasFor(cfg Config, n int) int {
	if cfg.Prod() {
		return n
	}
	return 1
}
