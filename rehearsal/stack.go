// Package rehearsal runs what a stack renders for the cluster on one machine: the real service
// binaries, each with its workload's rendered environment and files and as many replicas as the
// stack declares (at least two gateways), against PostgreSQL and Redis set up as the stack
// declares them, behind stand-ins for what AWS and Istio put in front of the gateway. Then it
// drives the platform's scenarios through that front and reports every divergence with the
// configuration key or resource to fix.
//
// The package knows nothing of Pulumi: cmd/shopmesh reads a Stack out of the offline plan.
package rehearsal

import (
	"fmt"
	"sort"
	"time"
)

// Stack is what one stack renders that the rehearsal runs.
type Stack struct {
	Name      string // dev, prod
	Namespace string // the workloads' namespace: "<svc>.<ns>.svc.cluster.local" names a Service
	// Jobs run to completion before the workloads start (the database logins' bootstrap).
	Jobs []Job
	// Workloads in start order: a service's callees come before it.
	Workloads []Workload
	Cache     Cache
	Edge      Edge
}

// Workload is one Deployment: its container's environment (the ConfigMap), the files mounted
// into it, and the pod spec's replicas, probes and termination.
type Workload struct {
	Name      string
	Env       map[string]string // the ConfigMap the container reads with envFrom
	Files     map[string]string // mount path → content (ConfigMap volumes)
	Replicas  int               // spec.replicas, or the HPA's minReplicas
	Port      int               // the container port the probes use
	Readiness string            // readiness probe path
	PreStop   time.Duration     // the preStop sleep
	Grace     time.Duration     // terminationGracePeriodSeconds
}

// Job is a Kubernetes Job: a service's binary run once with arguments and an environment.
type Job struct {
	Name   string
	Binary string // the service whose image it runs
	Args   []string
	Env    map[string]string
}

// Cache is the rate-limit cache's user, as the stack declares it.
type Cache struct {
	UserID       string // user ID = user name (IAM authentication requires it)
	AccessString string // the user's ACL rules
}

// Edge is the API Gateway REST API in front of the NLB, and the NLB's target group.
type Edge struct {
	Stage     string
	Methods   []Method
	Throttles map[string]Throttle // method path ("*/*", "orders/POST") → stage throttle
	// The NLB's target group health check.
	HealthPath      string
	HealthInterval  time.Duration
	HealthyAfter    int // healthy threshold
	PreserveClient  bool
	Deregistration  time.Duration
	IntegrationWait time.Duration // the integration's timeout
}

// Method is one API Gateway method and its HTTP_PROXY integration.
type Method struct {
	Resource string // "/users", "/users/{proxy+}"
	Verb     string // "ANY", "POST", …
	// HeaderMappings are the integration request's header parameters: header → source
	// ("context.identity.sourceIp", "method.request.header.X", "'static'").
	HeaderMappings map[string]string
}

// Throttle is a stage's method throttling.
type Throttle struct {
	Rate  float64
	Burst int
}

// Workload returns the workload named name.
func (s Stack) Workload(name string) (*Workload, error) {
	for i := range s.Workloads {
		if s.Workloads[i].Name == name {
			return &s.Workloads[i], nil
		}
	}
	return nil, fmt.Errorf("the stack renders no %s Deployment", name)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
