package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/shopmesh/shopmesh/rehearsal"
	"github.com/shopmesh/shopmesh/stacks/platform"
)

// runRehearse plans a stack offline and runs what it renders on this machine (package
// rehearsal), against the PostgreSQL of DATABASE_URL and the Redis of REDIS_URL.
func runRehearse(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shopmesh rehearse", flag.ContinueOnError)
	fs.SetOutput(stdout)
	stack := fs.String("stack", "", "stack to rehearse: dev or prod (reads Pulumi.<stack>.yaml)")
	bin := fs.String("bin", "", "folder with the users, products, orders and gateway binaries (default: build them from this checkout)")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(rehearsal.Scenarios, ", ")+")")
	healthScale := fs.Float64("health-scale", 5, "divide the NLB health check's interval by this, to keep a rollout short (1: as declared)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stack == "" || fs.NArg() > 0 {
		return errors.New("usage: shopmesh rehearse --stack dev|prod [--scenarios a,b] [--bin DIR]; needs DATABASE_URL and REDIS_URL")
	}
	o := rehearsal.Options{Postgres: getenv("DATABASE_URL"), Redis: getenv("REDIS_URL"), Out: stdout, HealthScale: *healthScale}
	if o.Postgres == "" || o.Redis == "" {
		return errors.New("rehearse needs the PostgreSQL and Redis to run against: set DATABASE_URL (a user that may create roles and databases) and REDIS_URL (a user that may change ACLs)")
	}
	if *only != "" {
		o.Scenarios = strings.Split(*only, ",")
		for _, s := range o.Scenarios {
			if !contains(rehearsal.Scenarios, s) {
				return fmt.Errorf("--scenarios: no scenario %q (there are %s)", s, strings.Join(rehearsal.Scenarios, ", "))
			}
		}
	}
	plan, _, err := planStack("", *stack, nil)
	if err != nil {
		return err
	}
	s, err := stackFromPlan(plan)
	if err != nil {
		return fmt.Errorf("rehearse %s: %w", *stack, err)
	}
	if o.Bin = *bin; o.Bin == "" {
		root, err := projectRoot()
		if err != nil {
			return err
		}
		if o.Bin, err = buildServices(ctx, root); err != nil {
			return err
		}
		defer os.RemoveAll(o.Bin)
	}
	return rehearsal.Run(ctx, s, o)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// buildServices builds the service binaries of the checkout at root into a new folder.
func buildServices(ctx context.Context, root string) (string, error) {
	dir, err := os.MkdirTemp("", "shopmesh-bin-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, s := range platform.Services {
		args = append(args, "./cmd/"+s)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build the services: %v\n%s", err, out)
	}
	return dir, nil
}

// stackFromPlan reads what the rehearsal runs out of the offline plan: each service's
// ConfigMap, mounted files, replicas, probes and termination; the cache user; API Gateway's
// methods, integrations and throttles; the NLB's target group.
func stackFromPlan(p *platform.Plan) (rehearsal.Stack, error) {
	s := rehearsal.Stack{Name: p.Stack, Edge: rehearsal.Edge{Throttles: map[string]rehearsal.Throttle{}}}
	configMaps := map[string]map[string]string{}
	for _, r := range p.ByType("kubernetes:core/v1:ConfigMap") {
		data := map[string]string{}
		for k, v := range asMap(r.Inputs["data"]) {
			data[k] = fmt.Sprint(v)
		}
		configMaps[str(r.Inputs, "metadata.name")] = data
		s.Namespace = str(r.Inputs, "metadata.namespace")
	}
	minReplicas := map[string]int{}
	for _, r := range p.ByType("kubernetes:autoscaling/v2:HorizontalPodAutoscaler") {
		minReplicas[str(r.Inputs, "spec.scaleTargetRef.name")] = num(r.Inputs, "spec.minReplicas")
	}
	// Start order: whom a service calls starts before it (platform.Callers), the gateway last.
	order := map[string]int{"users": 0, "products": 1, "orders": 2, "gateway": 3}
	deployments := p.ByType("kubernetes:apps/v1:Deployment")
	sort.SliceStable(deployments, func(i, j int) bool { return order[deployments[i].Name] < order[deployments[j].Name] })
	for _, d := range deployments {
		if _, ok := order[d.Name]; !ok {
			continue // the platform's own (controllers, agents)
		}
		spec := asMap(platform.At(d.Inputs, "spec.template.spec"))
		container := asMap(platform.At(spec, "containers.0"))
		w := rehearsal.Workload{
			Name: d.Name, Env: map[string]string{}, Files: map[string]string{},
			Replicas:  num(d.Inputs, "spec.replicas"),
			Port:      num(container, "readinessProbe.httpGet.port"),
			Readiness: str(container, "readinessProbe.httpGet.path"),
			PreStop:   time.Duration(num(container, "lifecycle.preStop.sleep.seconds")) * time.Second,
			Grace:     time.Duration(num(spec, "terminationGracePeriodSeconds")) * time.Second,
		}
		if w.Replicas == 0 {
			w.Replicas = minReplicas[d.Name]
		}
		for _, from := range asList(container["envFrom"]) {
			cm, ok := configMaps[str(asMap(from), "configMapRef.name")]
			if !ok {
				return s, fmt.Errorf("the %s Deployment reads ConfigMap %q, which the stack does not declare", d.Name, str(asMap(from), "configMapRef.name"))
			}
			for k, v := range cm {
				w.Env[k] = v
			}
		}
		volumes := map[string]string{} // volume → ConfigMap
		for _, v := range asList(spec["volumes"]) {
			if name := str(asMap(v), "configMap.name"); name != "" {
				volumes[str(asMap(v), "name")] = name
			}
		}
		for _, m := range asList(container["volumeMounts"]) {
			if cm, ok := volumes[str(asMap(m), "name")]; ok {
				for k, v := range configMaps[cm] {
					w.Files[path.Join(str(asMap(m), "mountPath"), k)] = v
				}
			}
		}
		if w.Readiness == "" || w.Grace == 0 {
			return s, fmt.Errorf("the %s Deployment has no readiness probe path or grace period", d.Name)
		}
		s.Workloads = append(s.Workloads, w)
	}
	if len(s.Workloads) != len(order) {
		return s, fmt.Errorf("the plan renders %d of the %d service Deployments (is shopmesh:workloads false?)", len(s.Workloads), len(order))
	}

	for _, j := range p.ByType("kubernetes:batch/v1:Job") {
		container := asMap(platform.At(j.Inputs, "spec.template.spec.containers.0"))
		image := str(container, "image") // <registry>/shopmesh/<stack>/<service>:<tag>@<digest>
		repo, _, _ := strings.Cut(image, ":")
		job := rehearsal.Job{Name: j.Name, Binary: path.Base(repo), Env: map[string]string{}}
		for _, a := range asList(container["args"]) {
			job.Args = append(job.Args, fmt.Sprint(a))
		}
		for _, e := range asList(container["env"]) {
			job.Env[str(asMap(e), "name")] = str(asMap(e), "value")
		}
		if !contains(platform.Services, job.Binary) {
			return s, fmt.Errorf("the %s Job runs image %q, not one of the services' (the rehearsal runs their binaries)", j.Name, image)
		}
		s.Jobs = append(s.Jobs, job)
	}

	users := p.ByType("aws:elasticache/user:User")
	if len(users) != 1 {
		return s, fmt.Errorf("%d ElastiCache users in the plan, want the gateway's one", len(users))
	}
	s.Cache = rehearsal.Cache{UserID: str(users[0].Inputs, "userId"), AccessString: str(users[0].Inputs, "accessString")}

	stages := p.ByType("aws:apigateway/stage:Stage")
	if len(stages) != 1 {
		return s, fmt.Errorf("%d API Gateway stages in the plan, want one", len(stages))
	}
	s.Edge.Stage = str(stages[0].Inputs, "stageName")
	resources := map[string]platform.Resource{}
	for _, r := range p.ByType("aws:apigateway/resource:Resource") {
		resources[r.Name+"-id"] = r // the offline plan's ids are "<name>-id"
	}
	var resourcePath func(id string) string
	resourcePath = func(id string) string {
		r, ok := resources[id]
		if !ok {
			return "" // the API's root resource
		}
		return resourcePath(str(r.Inputs, "parentId")) + "/" + str(r.Inputs, "pathPart")
	}
	for _, in := range p.ByType("aws:apigateway/integration:Integration") {
		m := rehearsal.Method{Resource: resourcePath(str(in.Inputs, "resourceId")), Verb: str(in.Inputs, "httpMethod"), HeaderMappings: map[string]string{}}
		if in.Inputs["type"] != "HTTP_PROXY" {
			return s, fmt.Errorf("integration %s is %v; the rehearsal models HTTP_PROXY", in.Name, in.Inputs["type"])
		}
		for k, v := range asMap(in.Inputs["requestParameters"]) {
			if h, ok := strings.CutPrefix(k, "integration.request.header."); ok {
				m.HeaderMappings[h] = fmt.Sprint(v)
			}
		}
		if ms := num(in.Inputs, "timeoutMilliseconds"); ms > 0 {
			s.Edge.IntegrationWait = time.Duration(ms) * time.Millisecond
		}
		s.Edge.Methods = append(s.Edge.Methods, m)
	}
	for _, ms := range p.ByType("aws:apigateway/methodSettings:MethodSettings") {
		settings := asMap(ms.Inputs["settings"])
		rate, _ := settings["throttlingRateLimit"].(float64)
		s.Edge.Throttles[str(ms.Inputs, "methodPath")] = rehearsal.Throttle{Rate: rate, Burst: num(settings, "throttlingBurstLimit")}
	}
	tgs := p.ByType("aws:lb/targetGroup:TargetGroup")
	if len(tgs) != 1 {
		return s, fmt.Errorf("%d target groups in the plan, want the gateway's one", len(tgs))
	}
	tg := tgs[0].Inputs
	s.Edge.HealthPath = str(tg, "healthCheck.path")
	s.Edge.HealthInterval = time.Duration(num(tg, "healthCheck.interval")) * time.Second
	s.Edge.HealthyAfter = num(tg, "healthCheck.healthyThreshold")
	s.Edge.PreserveClient = str(tg, "preserveClientIp") == "true"
	s.Edge.Deregistration = time.Duration(num(tg, "deregistrationDelay")) * time.Second
	return s, nil
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }

func str(m map[string]any, path string) string {
	if v := platform.At(m, path); v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

func num(m map[string]any, path string) int {
	switch v := platform.At(m, path).(type) {
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}
