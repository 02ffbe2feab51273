package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecr"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiextensions"
	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	autoscalingv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/autoscaling/v2"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	policyv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/policy/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Workloads are the shop's Kubernetes resources: per service a ServiceAccount, ConfigMap,
// Deployment and Service (plus HPA and PDB when autoscaling), network policies, the database
// database reader roles (IRSA), and the AWS Load Balancer Controller registering the gateway in the NLB.
type Workloads struct {
	pulumi.ResourceState
}

// WorkloadsArgs configures Workloads.
type WorkloadsArgs struct {
	Config         Config
	Provider       *kubernetes.Provider
	Mesh           *Mesh
	Network        *Network
	Cluster        *Cluster
	Registry       *Registry
	Database       *Database
	Cache          *Cache
	TargetGroupArn pulumi.StringOutput
}

// dataServices keep data in PostgreSQL, each in its own schema.
var dataServices = map[string]bool{"users": true, "products": true, "orders": true}

// Calls lists whom each service calls; the inverse of Callers, for egress policies.
func Calls(svc string) []string {
	var out []string
	for _, callee := range Services {
		for _, caller := range Callers[callee] {
			if caller == svc {
				out = append(out, callee)
			}
		}
	}
	return out
}

// NewWorkloads deploys the services into the mesh namespace.
func NewWorkloads(ctx *pulumi.Context, name string, args WorkloadsArgs, opts ...pulumi.ResourceOption) (*Workloads, error) {
	w := &Workloads{}
	if err := ctx.RegisterComponentResource("shopmesh:workloads:Workloads", name, w, opts...); err != nil {
		return nil, err
	}
	cfg, ns := args.Config, args.Mesh.Namespace
	k8s := []pulumi.ResourceOption{pulumi.Parent(w), pulumi.Provider(args.Provider), pulumi.DependsOn(args.Mesh.Ready)}
	meta := func(objName string, labels pulumi.StringMap) *metav1.ObjectMetaArgs {
		return &metav1.ObjectMetaArgs{Name: pulumi.String(objName), Namespace: pulumi.String(ns), Labels: labels}
	}

	parent := pulumi.Parent(w)
	// A database login per data service, each confined to its schema: made by the bootstrap
	// Job, its password in the service's own secret, which the service alone may read.
	logins, err := databaseLogins(ctx, args, ns, meta, k8s, parent)
	if err != nil {
		return nil, err
	}
	for _, svc := range Services {
		labels := pulumi.StringMap{"app": pulumi.String(svc), "app.kubernetes.io/part-of": pulumi.String("shopmesh")}
		saMeta := meta(svc, labels)
		env := serviceEnv(cfg, ns, svc)
		if dataServices[svc] {
			// The service reads the database password itself, through IRSA, when it opens a
			// connection: no password in Pulumi state or in a Kubernetes object, and a rotated
			// one is picked up without a redeploy.
			role, err := databaseReader(ctx, args, ns, svc, logins.secrets[svc].Arn, parent)
			if err != nil {
				return nil, err
			}
			saMeta.Annotations = pulumi.StringMap{"eks.amazonaws.com/role-arn": role.Arn}
			env["DATABASE_URL"] = databaseURL(args.Database)
			env["DATABASE_SECRET_ARN"] = logins.secrets[svc].Arn
			env["AWS_REGION"] = pulumi.String(cfg.Region)
		}
		var err error
		var routes *routeTable
		if svc == "gateway" {
			routes, err = gatewayRouteTable(ctx, cfg, ns, meta, labels, k8s)
			if err != nil {
				return nil, err
			}
			env["ROUTES_FILE"] = pulumi.String(RoutesFile)
			// In the cluster the upstreams are plain HTTP (the mesh does mutual TLS), so the
			// event loops serve every proxied request themselves.
			env["GATEWAY_ENGINE"] = pulumi.String(cfg.GatewayEngine)
			// Every connection reaches the gateway through its sidecar, from the sidecar's own
			// address; only the NLB reaches the sidecar (allow-gateway), and only API Gateway's
			// VPC link reaches the NLB. So X-Forwarded-For, which API Gateway sets (edge.go), is
			// believed from that address and from no other.
			env["TRUSTED_PROXIES"] = pulumi.String(strings.Join(SidecarInboundSources, ","))
			// One rate limit across every replica: the Valkey cache, over TLS, as a user that
			// authenticates with the pod's IAM role (no password anywhere).
			role, err := cacheClient(ctx, args, ns, svc, parent)
			if err != nil {
				return nil, err
			}
			saMeta.Annotations = pulumi.StringMap{"eks.amazonaws.com/role-arn": role.Arn}
			env["REDIS_URL"] = pulumi.Sprintf("rediss://%s@%s:%d/0", args.Cache.UserID, args.Cache.Address, args.Cache.Port)
			env["REDIS_AUTH"] = pulumi.String("iam")
			env["REDIS_CACHE_NAME"] = pulumi.String(args.Cache.GroupID)
			env["AWS_REGION"] = pulumi.String(cfg.Region)
		}
		sa, err := corev1.NewServiceAccount(ctx, svc, &corev1.ServiceAccountArgs{
			Metadata: saMeta,
			// Mesh identity comes from the token Istio mints, AWS access from the projected token
			// EKS's pod identity webhook adds for IRSA; the API token is not needed.
			AutomountServiceAccountToken: pulumi.Bool(false),
		}, k8s...)
		if err != nil {
			return nil, err
		}

		cm, err := corev1.NewConfigMap(ctx, svc, &corev1.ConfigMapArgs{Metadata: meta(svc, labels), Data: env}, k8s...)
		if err != nil {
			return nil, err
		}
		service, err := corev1.NewService(ctx, svc, &corev1.ServiceArgs{
			Metadata: meta(svc, labels),
			Spec: &corev1.ServiceSpecArgs{
				Type:     pulumi.String("ClusterIP"),
				Selector: pulumi.StringMap{"app": pulumi.String(svc)},
				Ports: corev1.ServicePortArray{corev1.ServicePortArgs{
					Name: pulumi.String("http"), Port: pulumi.Int(80), TargetPort: pulumi.Int(ContainerPort), Protocol: pulumi.String("TCP"),
				}},
			},
		}, k8s...)
		if err != nil {
			return nil, err
		}
		deploymentOpts := k8s
		if dataServices[svc] { // its login exists once the bootstrap has run
			deploymentOpts = append(append([]pulumi.ResourceOption{}, k8s...), pulumi.DependsOn([]pulumi.Resource{logins.job}))
		}
		if svc == "gateway" {
			// The gateway's pods come after the load balancer controller and their
			// TargetGroupBinding: the controller's webhook injects the readiness gate only
			// into pods created while it runs and a binding selects them.
			binding, err := loadBalancerController(ctx, args, service, parent, meta, k8s)
			if err != nil {
				return nil, err
			}
			deploymentOpts = append(append([]pulumi.ResourceOption{}, k8s...), pulumi.DependsOn([]pulumi.Resource{binding}))
		}
		deployment, err := appsv1.NewDeployment(ctx, svc, &appsv1.DeploymentArgs{
			Metadata: meta(svc, labels),
			Spec:     deploymentSpec(cfg, svc, labels, sa, cm, routes, imageRef(ctx, cfg, args.Registry, svc, parent)),
		}, deploymentOpts...)
		if err != nil {
			return nil, err
		}
		if cfg.Autoscaling {
			if err := autoscale(ctx, cfg, svc, labels, deployment, meta, k8s); err != nil {
				return nil, err
			}
		}
	}
	if err := networkPolicies(ctx, cfg, ns, args.Network, meta, k8s); err != nil {
		return nil, err
	}
	if cfg.Autoscaling {
		if err := clusterAutoscaler(ctx, args, parent, k8s); err != nil {
			return nil, err
		}
	}
	if err := ctx.RegisterResourceOutputs(w, pulumi.Map{"namespace": pulumi.String(ns)}); err != nil {
		return nil, err
	}
	return w, nil
}

// serviceEnv is each service's configuration (see the README's configuration table).
func serviceEnv(cfg Config, ns, svc string) pulumi.StringMap {
	in := func(target string) string { return "http://" + target + "." + ns + ".svc.cluster.local" }
	env := pulumi.StringMap{
		"HTTP_ADDR":    pulumi.String(":" + itoa(ContainerPort)),
		"LOG_LEVEL":    pulumi.String("info"),
		"JWT_ISSUER":   pulumi.String("shopmesh-users"),
		"JWT_AUDIENCE": pulumi.String("shopmesh"),
		"JWKS_URL":     pulumi.String(in("users") + "/.well-known/jwks.json"),
		// Istio's sidecars do mutual TLS and identity checks in the cluster; the services' own
		// mTLS is for everywhere else.
		"TLS_MODE": pulumi.String("off"),
		// Termination: see terminationSeconds.
		"SHUTDOWN_DRAIN":   pulumi.String(shutdownDrain.String()),
		"SHUTDOWN_TIMEOUT": pulumi.String(shutdownTimeout.String()),
		// The Go runtime collects harder as the heap nears the container's memory limit,
		// instead of the kernel killing the pod (Go's GC guide: "Suggested uses").
		"GOMEMLIMIT": pulumi.String(goMemLimit),
		// Traces to the CloudWatch agent on the node, which sends them to X-Ray; the gateway
		// decides whether a trace is recorded and every service follows its decision.
		"OTEL_EXPORTER_OTLP_ENDPOINT": pulumi.String(OTLPEndpoint),
		"OTEL_TRACES_SAMPLER":         pulumi.String("parentbased_traceidratio"),
		"OTEL_TRACES_SAMPLER_ARG":     pulumi.String(strconv.FormatFloat(float64(cfg.TraceSamplePercent)/100, 'f', -1, 64)),
		"OTEL_RESOURCE_ATTRIBUTES":    pulumi.String("deployment.environment=" + cfg.Stack),
	}
	if dataServices[svc] {
		env["DATABASE_SCHEMA"] = pulumi.String(svc)
	}
	switch svc {
	case "products":
		env["SEED_DEMO_CATALOG"] = pulumi.String(strconv.FormatBool(!cfg.Prod()))
	case "orders":
		env["PRODUCTS_URL"] = pulumi.String(in("products"))
	}
	return env
}

// Termination of a pod: the kubelet runs the preStop sleep while the pod's endpoint is removed
// from kube-proxy's rules and the mesh's sidecars, then sends SIGTERM; the service then reports
// not ready and keeps serving for shutdownDrain (closing each keep-alive connection after its
// response), and gives in-flight requests shutdownTimeout. Istio's sidecar gets SIGTERM when the
// termination starts, so its drain must outlast all three; the grace period outlasts that.
// (Kubernetes docs, "Container Lifecycle Hooks": the grace period's countdown includes the
// preStop hook; Istio ProxyConfig: terminationDrainDuration, 5 s by default.)
const (
	preStopSeconds     = 5
	shutdownDrain      = 3 * time.Second
	shutdownTimeout    = 15 * time.Second
	sidecarDrain       = 25 * time.Second
	terminationSeconds = 30
	memoryLimit        = "256Mi"
	goMemLimit         = "230MiB" // 90 % of memoryLimit: the rest is for stacks, buffers and the binary
)

// routeTable is the gateway's route file as a ConfigMap, with the hash that rolls the gateway's
// pods when it changes (the gateway reads it at start-up).
type routeTable struct {
	configMap *corev1.ConfigMap
	hash      string
}

func gatewayRouteTable(ctx *pulumi.Context, cfg Config, ns string, meta func(string, pulumi.StringMap) *metav1.ObjectMetaArgs,
	labels pulumi.StringMap, k8s []pulumi.ResourceOption) (*routeTable, error) {
	data := gatewayRoutes(cfg, ns)
	cm, err := corev1.NewConfigMap(ctx, "gateway-routes", &corev1.ConfigMapArgs{
		Metadata: meta("gateway-routes", labels),
		Data:     pulumi.StringMap{path.Base(RoutesFile): pulumi.String(data)},
	}, k8s...)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(data))
	return &routeTable{configMap: cm, hash: hex.EncodeToString(sum[:])}, nil
}

// imageRef is the service's image at imageTag, pinned to the digest ECR holds for that tag. The
// lookup fails the preview when the tag was never pushed ("The image with imageId … does not
// exist"), instead of a Deployment that waits ten minutes for an image that cannot be pulled.
func imageRef(ctx *pulumi.Context, cfg Config, registry *Registry, svc string, parent pulumi.ResourceOrInvokeOption) pulumi.StringOutput {
	image := ecr.GetImageOutput(ctx, ecr.GetImageOutputArgs{
		RepositoryName: registry.RepositoryNames[svc], ImageTag: pulumi.String(cfg.ImageTag),
	}, parent)
	return pulumi.Sprintf("%s:%s@%s", registry.RepositoryURLs[svc], cfg.ImageTag, image.ImageDigest())
}

func deploymentSpec(cfg Config, svc string, labels pulumi.StringMap, sa *corev1.ServiceAccount, cm *corev1.ConfigMap,
	routes *routeTable, image pulumi.StringOutput) *appsv1.DeploymentSpecArgs {
	probe := func(path string, initial int) *corev1.ProbeArgs {
		return &corev1.ProbeArgs{
			HttpGet:             &corev1.HTTPGetActionArgs{Path: pulumi.String(path), Port: pulumi.Int(ContainerPort)},
			InitialDelaySeconds: pulumi.Int(initial), PeriodSeconds: pulumi.Int(10), TimeoutSeconds: pulumi.Int(2), FailureThreshold: pulumi.Int(3),
		}
	}
	mounts := corev1.VolumeMountArray{corev1.VolumeMountArgs{Name: pulumi.String("tmp"), MountPath: pulumi.String("/tmp")}}
	volumes := corev1.VolumeArray{corev1.VolumeArgs{Name: pulumi.String("tmp"), EmptyDir: &corev1.EmptyDirVolumeSourceArgs{SizeLimit: pulumi.String("64Mi")}}}
	annotations := pulumi.StringMap{"proxy.istio.io/config": pulumi.String("terminationDrainDuration: " + sidecarDrain.String())}
	if routes != nil {
		mounts = append(mounts, corev1.VolumeMountArgs{Name: pulumi.String("routes"), MountPath: pulumi.String(path.Dir(RoutesFile)), ReadOnly: pulumi.Bool(true)})
		volumes = append(volumes, corev1.VolumeArgs{Name: pulumi.String("routes"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{Name: routes.configMap.Metadata.Name()}})
		annotations["shopmesh.io/routes-sha256"] = pulumi.String(routes.hash)
	}
	// With an HPA the Deployment leaves replicas unset, so that pulumi up does not undo the HPA's
	// scaling (Kubernetes docs, "Horizontal Pod Autoscaling": migrating Deployments to autoscaling).
	var replicas pulumi.IntPtrInput
	if !cfg.Autoscaling {
		replicas = pulumi.Int(cfg.Replicas)
	}
	return &appsv1.DeploymentSpecArgs{
		Replicas: replicas,
		Selector: &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"app": pulumi.String(svc)}},
		Strategy: &appsv1.DeploymentStrategyArgs{Type: pulumi.String("RollingUpdate"), RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{
			MaxUnavailable: pulumi.Int(0), MaxSurge: pulumi.Int(1),
		}},
		Template: &corev1.PodTemplateSpecArgs{
			Metadata: &metav1.ObjectMetaArgs{Labels: labels, Annotations: annotations},
			Spec: &corev1.PodSpecArgs{
				ServiceAccountName:            sa.Metadata.Name(),
				AutomountServiceAccountToken:  pulumi.Bool(false),
				TerminationGracePeriodSeconds: pulumi.Int(terminationSeconds),
				SecurityContext:               podSecurity(),
				TopologySpreadConstraints: corev1.TopologySpreadConstraintArray{corev1.TopologySpreadConstraintArgs{
					MaxSkew: pulumi.Int(1), TopologyKey: pulumi.String("topology.kubernetes.io/zone"),
					WhenUnsatisfiable: pulumi.String("ScheduleAnyway"),
					LabelSelector:     &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"app": pulumi.String(svc)}},
				}},
				Containers: corev1.ContainerArray{corev1.ContainerArgs{
					Name:            pulumi.String(svc),
					Image:           image,
					ImagePullPolicy: pulumi.String("IfNotPresent"),
					Ports:           corev1.ContainerPortArray{corev1.ContainerPortArgs{Name: pulumi.String("http"), ContainerPort: pulumi.Int(ContainerPort)}},
					EnvFrom:         corev1.EnvFromSourceArray{corev1.EnvFromSourceArgs{ConfigMapRef: &corev1.ConfigMapEnvSourceArgs{Name: cm.Metadata.Name()}}},
					LivenessProbe:   probe("/healthz", 5),
					ReadinessProbe:  probe("/readyz", 2),
					// The kubelet's own sleep: the distroless image has no shell or sleep binary.
					Lifecycle: &corev1.LifecycleArgs{PreStop: &corev1.LifecycleHandlerArgs{
						Sleep: &corev1.SleepActionArgs{Seconds: pulumi.Int(preStopSeconds)},
					}},
					Resources: &corev1.ResourceRequirementsArgs{
						Requests: pulumi.StringMap{"cpu": pulumi.String("100m"), "memory": pulumi.String("128Mi")},
						Limits:   pulumi.StringMap{"cpu": pulumi.String("1"), "memory": pulumi.String(memoryLimit)},
					},
					SecurityContext: containerSecurity(),
					VolumeMounts:    mounts,
				}},
				Volumes: volumes,
			},
		},
	}
}

// podSecurity and containerSecurity are every pod's: non-root, the runtime's seccomp profile,
// a read-only root, no privilege escalation, no capabilities.
func podSecurity() *corev1.PodSecurityContextArgs {
	return &corev1.PodSecurityContextArgs{
		RunAsNonRoot: pulumi.Bool(true), RunAsUser: pulumi.Int(65532), RunAsGroup: pulumi.Int(65532), FsGroup: pulumi.Int(65532),
		SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
	}
}

func containerSecurity() *corev1.SecurityContextArgs {
	return &corev1.SecurityContextArgs{
		AllowPrivilegeEscalation: pulumi.Bool(false),
		ReadOnlyRootFilesystem:   pulumi.Bool(true),
		RunAsNonRoot:             pulumi.Bool(true),
		Capabilities:             &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
	}
}

func autoscale(ctx *pulumi.Context, cfg Config, svc string, labels pulumi.StringMap, d *appsv1.Deployment,
	meta func(string, pulumi.StringMap) *metav1.ObjectMetaArgs, k8s []pulumi.ResourceOption) error {
	if _, err := autoscalingv2.NewHorizontalPodAutoscaler(ctx, svc, &autoscalingv2.HorizontalPodAutoscalerArgs{
		Metadata: meta(svc, labels),
		Spec: &autoscalingv2.HorizontalPodAutoscalerSpecArgs{
			ScaleTargetRef: &autoscalingv2.CrossVersionObjectReferenceArgs{
				ApiVersion: pulumi.String("apps/v1"), Kind: pulumi.String("Deployment"), Name: d.Metadata.Name().Elem(),
			},
			MinReplicas: pulumi.Int(cfg.Replicas),
			MaxReplicas: pulumi.Int(cfg.HpaMaxReplicas),
			Metrics: autoscalingv2.MetricSpecArray{autoscalingv2.MetricSpecArgs{
				Type: pulumi.String("Resource"),
				Resource: &autoscalingv2.ResourceMetricSourceArgs{Name: pulumi.String("cpu"), Target: &autoscalingv2.MetricTargetArgs{
					Type: pulumi.String("Utilization"), AverageUtilization: pulumi.Int(70),
				}},
			}},
		},
	}, k8s...); err != nil {
		return err
	}
	_, err := policyv1.NewPodDisruptionBudget(ctx, svc, &policyv1.PodDisruptionBudgetArgs{
		Metadata: meta(svc, labels),
		Spec: &policyv1.PodDisruptionBudgetSpecArgs{
			MaxUnavailable: pulumi.Int(1),
			Selector:       &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"app": pulumi.String(svc)}},
		},
	}, k8s...)
	return err
}

// networkPolicies deny everything in the namespace, then allow what the traffic needs.
func networkPolicies(ctx *pulumi.Context, cfg Config, ns string, network *Network, meta func(string, pulumi.StringMap) *metav1.ObjectMetaArgs,
	k8s []pulumi.ResourceOption) error {
	all := &metav1.LabelSelectorArgs{}
	app := func(name string) *metav1.LabelSelectorArgs {
		return &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"app": pulumi.String(name)}}
	}
	nsSelector := func(name string) *metav1.LabelSelectorArgs {
		return &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"kubernetes.io/metadata.name": pulumi.String(name)}}
	}
	port := func(p int, proto string) networkingv1.NetworkPolicyPortArgs {
		return networkingv1.NetworkPolicyPortArgs{Port: pulumi.Int(p), Protocol: pulumi.String(proto)}
	}
	both := pulumi.StringArray{pulumi.String("Ingress"), pulumi.String("Egress")}
	policies := map[string]*networkingv1.NetworkPolicySpecArgs{
		"default-deny": {PodSelector: all, PolicyTypes: both},
		"allow-dns-and-mesh": {
			PodSelector: all,
			PolicyTypes: pulumi.StringArray{pulumi.String("Egress")},
			Egress: networkingv1.NetworkPolicyEgressRuleArray{
				networkingv1.NetworkPolicyEgressRuleArgs{
					To:    networkingv1.NetworkPolicyPeerArray{networkingv1.NetworkPolicyPeerArgs{NamespaceSelector: nsSelector("kube-system")}},
					Ports: networkingv1.NetworkPolicyPortArray{port(53, "UDP"), port(53, "TCP")},
				},
				networkingv1.NetworkPolicyEgressRuleArgs{ // sidecars fetch config and certificates from istiod
					To:    networkingv1.NetworkPolicyPeerArray{networkingv1.NetworkPolicyPeerArgs{NamespaceSelector: nsSelector("istio-system")}},
					Ports: networkingv1.NetworkPolicyPortArray{port(15012, "TCP"), port(15017, "TCP")},
				},
				networkingv1.NetworkPolicyEgressRuleArgs{ // traces to the CloudWatch agent
					To:    networkingv1.NetworkPolicyPeerArray{networkingv1.NetworkPolicyPeerArgs{NamespaceSelector: nsSelector(cloudWatchNamespace)}},
					Ports: networkingv1.NetworkPolicyPortArray{port(OTLPPort, "TCP")},
				},
			},
		},
	}
	vpc := networkingv1.NetworkPolicyPeerArray{networkingv1.NetworkPolicyPeerArgs{IpBlock: &networkingv1.IPBlockArgs{Cidr: pulumi.String(network.VpcCidr)}}}
	// Only the NLB's reserved addresses reach the gateway: a pod cannot hold them, so no pod can
	// bypass API Gateway's throttling and WAF by calling the gateway directly.
	var nlb networkingv1.NetworkPolicyPeerArray
	for _, a := range network.LoadBalancerAddresses {
		nlb = append(nlb, networkingv1.NetworkPolicyPeerArgs{IpBlock: &networkingv1.IPBlockArgs{Cidr: pulumi.String(a + "/32")}})
	}
	// AWS APIs (STS for IRSA, Secrets Manager) are public endpoints reached through the NAT gateways.
	awsAPIs := networkingv1.NetworkPolicyPeerArray{networkingv1.NetworkPolicyPeerArgs{IpBlock: &networkingv1.IPBlockArgs{
		Cidr: pulumi.String("0.0.0.0/0"), Except: pulumi.ToStringArray([]string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}),
	}}}
	for _, svc := range Services {
		var ingress networkingv1.NetworkPolicyIngressRuleArray
		if svc == "gateway" {
			ingress = append(ingress, networkingv1.NetworkPolicyIngressRuleArgs{From: nlb, Ports: networkingv1.NetworkPolicyPortArray{port(ContainerPort, "TCP")}})
		}
		var from networkingv1.NetworkPolicyPeerArray
		for _, caller := range Callers[svc] {
			from = append(from, networkingv1.NetworkPolicyPeerArgs{PodSelector: app(caller)})
		}
		if len(from) > 0 {
			ingress = append(ingress, networkingv1.NetworkPolicyIngressRuleArgs{From: from, Ports: networkingv1.NetworkPolicyPortArray{port(ContainerPort, "TCP")}})
		}
		// Kubelet probes reach the sidecar's status port from the node.
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRuleArgs{From: vpc, Ports: networkingv1.NetworkPolicyPortArray{port(15020, "TCP"), port(15021, "TCP")}})

		var egress networkingv1.NetworkPolicyEgressRuleArray
		var to networkingv1.NetworkPolicyPeerArray
		for _, callee := range Calls(svc) {
			to = append(to, networkingv1.NetworkPolicyPeerArgs{PodSelector: app(callee)})
		}
		if len(to) > 0 {
			egress = append(egress, networkingv1.NetworkPolicyEgressRuleArgs{To: to, Ports: networkingv1.NetworkPolicyPortArray{port(ContainerPort, "TCP")}})
		}
		if dataServices[svc] {
			egress = append(egress,
				networkingv1.NetworkPolicyEgressRuleArgs{To: vpc, Ports: networkingv1.NetworkPolicyPortArray{port(5432, "TCP")}},
				networkingv1.NetworkPolicyEgressRuleArgs{To: awsAPIs, Ports: networkingv1.NetworkPolicyPortArray{port(443, "TCP")}})
		}
		if svc == "gateway" { // the rate-limit cache, and STS for its IAM role
			egress = append(egress,
				networkingv1.NetworkPolicyEgressRuleArgs{To: vpc, Ports: networkingv1.NetworkPolicyPortArray{port(CachePort, "TCP")}},
				networkingv1.NetworkPolicyEgressRuleArgs{To: awsAPIs, Ports: networkingv1.NetworkPolicyPortArray{port(443, "TCP")}})
		}
		policies["allow-"+svc] = &networkingv1.NetworkPolicySpecArgs{PodSelector: app(svc), PolicyTypes: both, Ingress: ingress, Egress: egress}
	}
	// The bootstrap Job: PostgreSQL and the AWS APIs (STS for its role, Secrets Manager), nothing in.
	policies["allow-"+BootstrapJob] = &networkingv1.NetworkPolicySpecArgs{PodSelector: app(BootstrapJob), PolicyTypes: both,
		Egress: networkingv1.NetworkPolicyEgressRuleArray{
			networkingv1.NetworkPolicyEgressRuleArgs{To: vpc, Ports: networkingv1.NetworkPolicyPortArray{port(5432, "TCP")}},
			networkingv1.NetworkPolicyEgressRuleArgs{To: awsAPIs, Ports: networkingv1.NetworkPolicyPortArray{port(443, "TCP")}},
		}}
	for _, name := range sortedKeys(policies) {
		if _, err := networkingv1.NewNetworkPolicy(ctx, name, &networkingv1.NetworkPolicyArgs{
			Metadata: meta(name, pulumi.StringMap{"app.kubernetes.io/part-of": pulumi.String("shopmesh")}),
			Spec:     policies[name],
		}, k8s...); err != nil {
			return err
		}
	}
	return nil
}

const lbControllerSA = "aws-load-balancer-controller"

// loadBalancerController installs the AWS Load Balancer Controller with an IRSA role limited
// to registering targets, and binds the gateway Service to the NLB's target group.
func loadBalancerController(ctx *pulumi.Context, args WorkloadsArgs, gateway *corev1.Service, parent pulumi.ResourceOrInvokeOption,
	meta func(string, pulumi.StringMap) *metav1.ObjectMetaArgs, k8s []pulumi.ResourceOption) (pulumi.Resource, error) {
	cfg := args.Config
	// Only what TargetGroupBinding needs: the controller creates no load balancers here.
	role, err := args.Cluster.ServiceAccountRole(ctx, "lb-controller", "kube-system", lbControllerSA, cfg, iam.GetPolicyDocumentStatementArray{
		iam.GetPolicyDocumentStatementArgs{
			Sid: pulumi.String("Describe"),
			Actions: pulumi.ToStringArray([]string{"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
				"elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTags",
				"ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"}),
			Resources: pulumi.StringArray{pulumi.String("*")},
		},
		iam.GetPolicyDocumentStatementArgs{
			Sid:       pulumi.String("RegisterGatewayTargets"),
			Actions:   pulumi.ToStringArray([]string{"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}),
			Resources: pulumi.StringArray{args.TargetGroupArn},
		},
	}, parent)
	if err != nil {
		return nil, err
	}
	release, err := helmv3.NewRelease(ctx, "aws-load-balancer-controller", &helmv3.ReleaseArgs{
		Name:           pulumi.String("aws-load-balancer-controller"),
		Chart:          pulumi.String("aws-load-balancer-controller"),
		Version:        pulumi.String(cfg.LbControllerVersion),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String("https://aws.github.io/eks-charts")},
		Namespace:      pulumi.String("kube-system"),
		Values: pulumi.Map{
			"clusterName":  args.Cluster.Name,
			"region":       pulumi.String(cfg.Region),
			"vpcId":        args.Network.VpcID,
			"replicaCount": pulumi.Int(replicasFor(cfg, 2)),
			"serviceAccount": pulumi.Map{"create": pulumi.Bool(true), "name": pulumi.String(lbControllerSA),
				"annotations": pulumi.StringMap{"eks.amazonaws.com/role-arn": role.Arn}},
			// The chart's Service mutating webhook (failurePolicy Fail) serves LoadBalancer Services,
			// which the shop has none of; with it on, every Service create fails while the
			// controller's pods are not ready, the shop's own Services included.
			"enableServiceMutatorWebhook": pulumi.Bool(false),
		},
	}, k8s...)
	if err != nil {
		return nil, err
	}
	return apiextensions.NewCustomResource(ctx, "gateway-target-group", &apiextensions.CustomResourceArgs{
		ApiVersion: pulumi.String("elbv2.k8s.aws/v1beta1"),
		Kind:       pulumi.String("TargetGroupBinding"),
		Metadata:   meta("gateway", pulumi.StringMap{"app": pulumi.String("gateway")}),
		OtherFields: kubernetes.UntypedArgs{"spec": pulumi.Map{
			"serviceRef":     pulumi.Map{"name": gateway.Metadata.Name().Elem(), "port": pulumi.Int(80)},
			"targetGroupARN": args.TargetGroupArn,
			"targetType":     pulumi.String("ip"),
		}},
	}, append(k8s, pulumi.DependsOn([]pulumi.Resource{release, gateway}))...)
}

// databaseReader is the IRSA role of a data service: it may read the database's master user
// secret and nothing else.
// cacheClient is the gateway's IRSA role: elasticache:Connect to the rate-limit cache as its
// user (ElastiCache guide, "Authenticating with IAM": the action on both the cache and the user).
func cacheClient(ctx *pulumi.Context, args WorkloadsArgs, ns, svc string, parent pulumi.ResourceOrInvokeOption) (*iam.Role, error) {
	return args.Cluster.ServiceAccountRole(ctx, svc+"-cache", ns, svc, args.Config, iam.GetPolicyDocumentStatementArray{
		iam.GetPolicyDocumentStatementArgs{
			Sid:       pulumi.String("ConnectToRateLimitCache"),
			Actions:   pulumi.ToStringArray([]string{"elasticache:Connect"}),
			Resources: pulumi.StringArray{args.Cache.GroupArn, args.Cache.UserArn},
		},
	}, parent)
}

func databaseReader(ctx *pulumi.Context, args WorkloadsArgs, ns, svc string, secret pulumi.StringOutput, parent pulumi.ResourceOrInvokeOption) (*iam.Role, error) {
	return args.Cluster.ServiceAccountRole(ctx, svc+"-db", ns, svc, args.Config, iam.GetPolicyDocumentStatementArray{
		iam.GetPolicyDocumentStatementArgs{
			Sid:       pulumi.String("ReadOwnLoginSecret"),
			Actions:   pulumi.ToStringArray([]string{"secretsmanager:GetSecretValue"}),
			Resources: pulumi.StringArray{secret},
		},
	}, parent)
}

// databaseURL names the server and database, never a user or password (those come from a
// secret), and verifies the server's certificate and name against the RDS CA bundle the image
// ships (RDSCABundle): sslmode=require would encrypt to any server answering at that name.
func databaseURL(db *Database) pulumi.StringOutput {
	return pulumi.Sprintf("postgres://%s:%d/%s?sslmode=verify-full&sslrootcert=%s", db.Address, db.Port, db.Name, RDSCABundle)
}

// The RDS certificate bundle for all regions (RDS User Guide, "Using SSL/TLS to encrypt a
// connection to a DB instance or cluster": certificate bundles), which the Dockerfile adds to
// every image at RDSCABundle.
const (
	RDSCABundleURL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
	RDSCABundle    = "/etc/ssl/certs/rds-global-bundle.pem"
)

func itoa(n int) string { return strconv.Itoa(n) }
