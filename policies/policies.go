// Package policies is the platform's policy pack: the Rego files in this folder, which
// `pulumi preview --policy-pack ./policies` runs through Pulumi's OPA analyzer, loaded with the
// OPA library and evaluated on resources the way that analyzer does.
package policies

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

//go:embed *.rego
var files embed.FS

// Level is a rule's enforcement level, from its name as the analyzer reads it.
type Level string

// Enforcement levels.
const (
	Mandatory Level = "mandatory" // deny_*, violation_*, stack_deny_*, stack_violation_*
	Advisory  Level = "advisory"  // warn_*, stack_warn_*
)

// The analyzer's rule-name patterns (pulumi-policy-opa): only these names are rules.
var (
	stackDeny = regexp.MustCompile(`^stack_(deny|violation)(_[a-zA-Z0-9]+)*$`)
	stackWarn = regexp.MustCompile(`^stack_warn(_[a-zA-Z0-9]+)*$`)
	deny      = regexp.MustCompile(`^(deny|violation)(_[a-zA-Z0-9]+)*$`)
	warn      = regexp.MustCompile(`^warn(_[a-zA-Z0-9]+)*$`)
)

// Rule is one policy with its metadata.
type Rule struct {
	Name        string // the Rego rule, e.g. deny_rds_public
	ID          string // stable id, e.g. SHOP-RDS-002
	Title       string
	Description string
	Severity    string
	Remediation string
	Level       Level
	Stack       bool   // evaluated once over input.resources rather than per resource
	File        string // the .rego file defining it
}

// Pack is the compiled policy pack.
type Pack struct {
	Name  string // the Rego package, which the analyzer uses as the pack's name
	Rules []Rule

	byName map[string]*Rule
	// One query per scope evaluates all its rules against an input at once.
	resourceQuery, stackQuery rego.PreparedEvalQuery
}

// Load compiles the pack embedded in this package.
func Load(ctx context.Context) (*Pack, error) { return LoadFS(ctx, files) }

// LoadFS compiles every .rego file of fsys as the analyzer does: Rego v0 parsing, so the files
// must import rego.v1 to use its keywords, all in one package.
func LoadFS(ctx context.Context, fsys fs.FS) (*Pack, error) {
	return load(ctx, fsys, ast.RegoV0)
}

func load(ctx context.Context, fsys fs.FS, version ast.RegoVersion) (*Pack, error) {
	modules := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		modules[p] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the policy pack: %w", err)
	}
	compiler, err := ast.CompileModulesWithOpt(modules, ast.CompileOpts{
		ParserOptions: ast.ParserOptions{RegoVersion: version, ProcessAnnotation: true},
	})
	if err != nil {
		return nil, fmt.Errorf("compile the policy pack: %w", err)
	}
	p := &Pack{byName: map[string]*Rule{}}
	annotations := compiler.GetAnnotationSet()
	for file, m := range compiler.Modules {
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if p.Name == "" {
			p.Name = pkg
		} else if p.Name != pkg {
			return nil, fmt.Errorf("%s: package %s, but the analyzer needs one package for the whole pack (%s)", file, pkg, p.Name)
		}
		for _, r := range m.Rules {
			name := r.Head.Name.String()
			level, stack, ok := classify(name)
			if !ok {
				continue
			}
			rule := p.byName[name]
			if rule == nil {
				rule = &Rule{Name: name, Level: level, Stack: stack, File: file}
				p.byName[name] = rule
			}
			for _, a := range annotations.GetRuleScope(r) {
				rule.Title, rule.Description = a.Title, a.Description
				rule.ID, _ = a.Custom["id"].(string)
				rule.Severity, _ = a.Custom["severity"].(string)
				rule.Remediation, _ = a.Custom["remediation"].(string)
			}
		}
	}
	for _, r := range p.byName {
		p.Rules = append(p.Rules, *r)
	}
	sort.Slice(p.Rules, func(i, j int) bool { return p.Rules[i].ID+p.Rules[i].Name < p.Rules[j].ID+p.Rules[j].Name })
	for _, stack := range []bool{false, true} {
		var fields []string
		for _, r := range p.Rules {
			if r.Stack == stack {
				fields = append(fields, fmt.Sprintf("%q: data.%s.%s", r.Name, p.Name, r.Name))
			}
		}
		q, err := rego.New(rego.Query("result := {"+strings.Join(fields, ", ")+"}"), rego.Compiler(compiler),
			rego.SetRegoVersion(version)).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("prepare the policy pack: %w", err)
		}
		if stack {
			p.stackQuery = q
		} else {
			p.resourceQuery = q
		}
	}
	return p, nil
}

func classify(name string) (Level, bool, bool) {
	switch {
	case stackDeny.MatchString(name):
		return Mandatory, true, true
	case stackWarn.MatchString(name):
		return Advisory, true, true
	case deny.MatchString(name):
		return Mandatory, false, true
	case warn.MatchString(name):
		return Advisory, false, true
	}
	return "", false, false
}

// Resource is one resource as the analyzer sees it.
type Resource struct {
	URN        string
	Type       string
	Name       string
	Parent     string
	Provider   string // the provider reference ("urn::id"), empty for the default one
	Properties map[string]any
	// For stack rules: what the resource depends on, as URNs (real previews and exports).
	Dependencies         []string
	PropertyDependencies map[string][]string
}

// Violation is one message of one rule about one resource (or the stack).
type Violation struct {
	Rule     Rule
	Resource string // the resource's URN; empty for a stack rule
	Message  string
}

// Input is the object the analyzer evaluates a resource-level rule on: the properties at the
// top level, the metadata beside them (properties win on a clash), and the __-prefixed
// metadata last so that it is always there.
func Input(r Resource) map[string]any {
	props := r.Properties
	if props == nil {
		props = map[string]any{}
	}
	opts := map[string]any{
		"protect": false, "ignoreChanges": []string(nil), "deleteBeforeReplace": false,
		"additionalSecretOutputs": []string(nil), "aliasURNs": []string(nil), "aliases": []map[string]any(nil),
		"customTimeouts": map[string]any{"create": 0.0, "update": 0.0, "delete": 0.0},
		"parent":         r.Parent,
	}
	provider := map[string]any{}
	if r.Provider != "" {
		urn, _, _ := strings.Cut(r.Provider, "::"+lastSegment(r.Provider))
		provider = map[string]any{"urn": urn, "name": providerName(r.Provider), "type": providerType(r.Provider), "properties": map[string]any{}}
	}
	obj := map[string]any{"type": r.Type, "urn": r.URN, "name": r.Name, "options": opts, "provider": provider, "properties": props}
	for k, v := range props {
		obj[k] = v
	}
	obj["__type"], obj["__urn"], obj["__name"] = r.Type, r.URN, r.Name
	obj["__options"], obj["__properties"], obj["__provider"] = opts, props, provider
	return obj
}

// StackInput is the object stack rules see: every resource's Input, with its dependencies.
func StackInput(resources []Resource) map[string]any {
	list := make([]any, 0, len(resources))
	for _, r := range resources {
		obj := Input(r)
		if r.Dependencies != nil {
			obj["dependencies"] = r.Dependencies
		}
		if r.PropertyDependencies != nil {
			obj["propertyDependencies"] = r.PropertyDependencies
		}
		list = append(list, obj)
	}
	return map[string]any{"resources": list}
}

// Check evaluates every resource rule on each resource and every stack rule on all of them.
func (p *Pack) Check(ctx context.Context, resources []Resource) ([]Violation, error) {
	var out []Violation
	for _, r := range resources {
		vs, err := p.eval(ctx, Input(r), false, r.URN)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.URN, err)
		}
		out = append(out, vs...)
	}
	vs, err := p.eval(ctx, StackInput(resources), true, "")
	if err != nil {
		return nil, fmt.Errorf("stack rules: %w", err)
	}
	return append(out, vs...), nil
}

func (p *Pack) eval(ctx context.Context, input map[string]any, stack bool, urn string) ([]Violation, error) {
	q := p.resourceQuery
	if stack {
		q = p.stackQuery
	}
	rs, err := q.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return nil, err
	}
	var out []Violation
	for _, result := range rs {
		doc, _ := result.Bindings["result"].(map[string]any)
		for name, value := range doc {
			rule := p.byName[name]
			msgs, _ := value.([]any)
			for _, m := range msgs {
				msg, ok := m.(string)
				if !ok {
					msg = fmt.Sprint(m)
				}
				out = append(out, Violation{Rule: *rule, Resource: urn, Message: msg})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rule.ID != out[j].Rule.ID {
			return out[i].Rule.ID < out[j].Rule.ID
		}
		return out[i].Message < out[j].Message
	})
	return out, nil
}

func lastSegment(ref string) string {
	if i := strings.LastIndex(ref, "::"); i >= 0 {
		return ref[i+2:]
	}
	return ""
}

// providerName and providerType read a provider reference urn:pulumi:s::p::pulumi:providers:kubernetes::name::id.
func providerName(ref string) string {
	parts := strings.Split(ref, "::")
	if len(parts) >= 5 {
		return parts[3]
	}
	return ""
}

func providerType(ref string) string {
	parts := strings.Split(ref, "::")
	if len(parts) >= 5 {
		typ := parts[2]
		if i := strings.LastIndex(typ, "$"); i >= 0 {
			typ = typ[i+1:]
		}
		return typ
	}
	return ""
}
