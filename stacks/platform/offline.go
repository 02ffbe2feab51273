package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Resource is one resource the program declares, as the offline plan records it.
type Resource struct {
	URN    string `json:"urn"`
	Type   string `json:"type"`
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"`
	// Provider is the explicit provider reference ("urn::id"), empty for the default one.
	Provider string         `json:"provider,omitempty"`
	Inputs   map[string]any `json:"inputs"`
	// RetainOnDelete and IgnoreChanges are the resource options of the same names.
	RetainOnDelete bool     `json:"retainOnDelete,omitempty"`
	IgnoreChanges  []string `json:"ignoreChanges,omitempty"`
	// StandIn marks a resource the harness registered in place of a remote component's
	// child (pulumi-eks), so that the program's references to it resolve offline.
	StandIn bool `json:"standIn,omitempty"`
	// Dependencies and PropertyDependencies are the URNs the engine would wait for before
	// creating this resource, as the program's RegisterResource call carries them.
	Dependencies         []string            `json:"dependencies,omitempty"`
	PropertyDependencies map[string][]string `json:"propertyDependencies,omitempty"`
}

// Plan is the program's resource graph for one stack, computed without AWS or the CLI.
type Plan struct {
	Project   string         `json:"project"`
	Stack     string         `json:"stack"`
	Resources []Resource     `json:"resources"`
	Outputs   map[string]any `json:"outputs"`
	// Invokes are the provider functions the program called (lookups such as aws:ecr/getImage),
	// in the order the mocks answered them.
	Invokes []Invoke `json:"invokes,omitempty"`
}

// Invoke is one provider function call.
type Invoke struct {
	Token string         `json:"token"`
	Args  map[string]any `json:"args"`
}

// ByType returns the resources of type typ, in registration order.
func (p *Plan) ByType(typ string) []Resource {
	var out []Resource
	for _, r := range p.Resources {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// Counts returns how many resources of each type the plan holds.
func (p *Plan) Counts() map[string]int {
	counts := map[string]int{}
	for _, r := range p.Resources {
		counts[r.Type]++
	}
	return counts
}

// PlanStack runs program offline for one stack with the configuration in dir (plus overrides,
// as `pulumi preview --config key=value` gives them) and returns every resource it declares,
// with its inputs and dependencies.
func PlanStack(dir, stack string, overrides map[string]string, program func(*pulumi.Context) (map[string]pulumi.Input, error)) (*Plan, error) {
	project, cfg, err := StackConfig(dir, stack, overrides)
	if err != nil {
		return nil, err
	}
	m := &mocks{project: project, stack: stack, region: cfg["aws:region"]}
	plan := &Plan{Project: project, Stack: stack, Outputs: map[string]any{}}
	var mu sync.Mutex
	err = pulumi.RunErr(func(ctx *pulumi.Context) error {
		m.ctx = ctx
		outputs, err := program(ctx)
		if err != nil {
			return err
		}
		for name, out := range outputs {
			pulumi.ToOutput(out).ApplyT(func(v any) error {
				mu.Lock()
				defer mu.Unlock()
				plan.Outputs[name] = v
				return nil
			})
		}
		return nil
	}, pulumi.WithMocks(project, stack, m), func(info *pulumi.RunInfo) { info.Config = cfg })
	if err != nil {
		return nil, err
	}
	plan.Resources = m.resources()
	plan.Invokes = m.invokes()
	if len(m.errs) > 0 {
		return nil, errors.Join(m.errs...)
	}
	return plan, nil
}

// mocks answers the program's resource registrations and function calls offline.
type mocks struct {
	project, stack, region string
	ctx                    *pulumi.Context

	mu      sync.Mutex
	records []Resource
	calls   []Invoke
	errs    []error
}

func (m *mocks) invokes() []Invoke {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Invoke(nil), m.calls...)
}

func (m *mocks) resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]Resource(nil), m.records...)
	return out
}

func (m *mocks) record(r Resource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, r)
}

// urn computes a URN the way the mock monitor does.
func (m *mocks) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.stack), tokens.PackageName(m.project), parentType, tokens.Type(typ), name))
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r := Resource{Type: args.TypeToken, Name: args.Name, Provider: args.Provider, Inputs: plainMap(args.Inputs)}
	if rpc := args.RegisterRPC; rpc != nil {
		r.Parent = rpc.GetParent()
		r.Dependencies = rpc.GetDependencies()
		r.RetainOnDelete = rpc.GetRetainOnDelete()
		r.IgnoreChanges = rpc.GetIgnoreChanges()
		for prop, deps := range rpc.GetPropertyDependencies() {
			if urns := deps.GetUrns(); len(urns) > 0 {
				if r.PropertyDependencies == nil {
					r.PropertyDependencies = map[string][]string{}
				}
				r.PropertyDependencies[prop] = urns
			}
		}
	}
	r.URN = m.urn(r.Parent, args.TypeToken, args.Name)
	m.record(r)
	id := args.Name + "-id"
	state := args.Inputs.Copy()
	for k, v := range fakeOutputs(m, args.TypeToken, args.Name, args.Inputs) {
		state[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	if args.TypeToken == "eks:index:Cluster" {
		refs, err := m.eksStandIns(args)
		if err != nil {
			return "", nil, err
		}
		for k, v := range refs {
			state[k] = v
		}
	}
	return id, state, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	m.calls = append(m.calls, Invoke{Token: args.Token, Args: plainMap(args.Args)})
	m.mu.Unlock()
	switch args.Token {
	case "aws:index/getAvailabilityZones:getAvailabilityZones":
		names := []any{m.region + "a", m.region + "b", m.region + "c"}
		return resource.NewPropertyMapFromMap(map[string]any{"names": names, "zoneIds": names, "id": m.region}), nil
	case "aws:index/getCallerIdentity:getCallerIdentity":
		return resource.NewPropertyMapFromMap(map[string]any{"accountId": fakeAccount, "arn": "arn:aws:iam::" + fakeAccount + ":user/offline", "userId": "offline"}), nil
	case "aws:index/getPartition:getPartition":
		return resource.NewPropertyMapFromMap(map[string]any{"partition": "aws", "dnsSuffix": "amazonaws.com"}), nil
	case "aws:iam/getPolicyDocument:getPolicyDocument":
		doc, err := renderPolicyDocument(args.Args)
		if err != nil {
			return nil, err
		}
		return resource.NewPropertyMapFromMap(map[string]any{"json": doc, "minifiedJson": doc}), nil
	case "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
		url := strings.TrimPrefix(str(args.Args, "url"), "https://")
		return resource.NewPropertyMapFromMap(map[string]any{"arn": "arn:aws:iam::" + fakeAccount + ":oidc-provider/" + url, "url": url}), nil
	case "aws:iam/getPolicy:getPolicy":
		// The account stack's boundary (AccountProgram), deployed before any environment.
		name := str(args.Args, "name")
		return resource.NewPropertyMapFromMap(map[string]any{"arn": "arn:aws:iam::" + fakeAccount + ":policy/" + name, "name": name}), nil
	case "aws:ssm/getParameter:getParameter":
		return resource.NewPropertyMapFromMap(map[string]any{"name": str(args.Args, "name"), "value": "ami-0123456789abcdef0", "type": "String"}), nil
	case "aws:ecr/getImage:getImage":
		// A pushed image's digest: deterministic per repository and tag.
		sum := sha256.Sum256([]byte(str(args.Args, "repositoryName") + ":" + str(args.Args, "imageTag")))
		return resource.NewPropertyMapFromMap(map[string]any{
			"imageDigest": "sha256:" + hex.EncodeToString(sum[:]), "imageTag": str(args.Args, "imageTag"),
			"repositoryName": str(args.Args, "repositoryName"),
		}), nil
	}
	return args.Args, nil
}

// plainMap turns recorded inputs into plain JSON-friendly values: secrets are unwrapped
// (the plan is for checking, never for deploying), resource references become their URN and id.
func plainMap(pm resource.PropertyMap) map[string]any {
	out := make(map[string]any, len(pm))
	for k, v := range pm {
		out[string(k)] = plain(v)
	}
	return out
}

func plain(v resource.PropertyValue) any {
	switch {
	case v.IsNull():
		return nil
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsComputed():
		return "<computed>"
	case v.IsOutput():
		if !v.OutputValue().Known {
			return "<computed>"
		}
		return plain(v.OutputValue().Element)
	case v.IsResourceReference():
		ref := v.ResourceReferenceValue()
		id, _ := ref.IDString()
		return map[string]any{"urn": string(ref.URN), "id": id}
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = plain(e)
		}
		return out
	case v.IsObject():
		return plainMap(v.ObjectValue())
	}
	return v.V
}

// sortedKeys is used wherever output must not depend on map order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// At is the value at a dotted path of a plan's inputs ("spec.template.spec.containers.0"): map
// keys and list indexes; nil when there is none.
func At(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}
