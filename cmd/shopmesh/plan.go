package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shopmesh/shopmesh/stacks/platform"
)

// runPlan runs the Pulumi program offline for one stack and prints its resource graph.
func runPlan(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shopmesh plan", flag.ContinueOnError)
	fs.SetOutput(stdout)
	stack := fs.String("stack", "", "stack to plan: dev or prod (reads Pulumi.<stack>.yaml)")
	asJSON := fs.Bool("json", false, "print one JSON record per resource {urn, type, name, parent, inputs}")
	dir := fs.String("dir", "", "folder holding Pulumi.yaml (default: the nearest one above the current folder)")
	overrides := configFlag{}
	fs.Var(overrides, "config", "key=value: set a config value for this plan, as pulumi preview --config does (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stack == "" || fs.NArg() > 0 {
		return errors.New("usage: shopmesh plan --stack dev|prod [--config key=value]... [--json] [--dir DIR]")
	}
	plan, note, err := planStack(*dir, *stack, overrides)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan.Resources)
	}
	if note != "" {
		fmt.Fprintln(stdout, note)
	}
	printTree(stdout, plan)
	return nil
}

// configFlag collects --config key=value pairs.
type configFlag map[string]string

func (c configFlag) String() string { return fmt.Sprint(map[string]string(c)) }

func (c configFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("--config wants key=value, got %q", v)
	}
	c[k] = val
	return nil
}

// planStack runs the program offline for stack, with the project in dir (default: the
// nearest folder above holding Pulumi.yaml) and the config overrides given. When neither the
// stack nor the overrides set imageTag, it plans with the checkout's commit, the tag make deploy
// pushes and deploys, and says so in note.
func planStack(dir, stack string, overrides map[string]string) (plan *platform.Plan, note string, err error) {
	root := dir
	if root == "" {
		if root, err = projectRoot(); err != nil {
			return nil, "", err
		}
	}
	if _, err := os.Stat(filepath.Join(root, "Pulumi."+stack+".yaml")); err != nil {
		return nil, "", fmt.Errorf("no stack %q: %s/Pulumi.%s.yaml does not exist", stack, root, stack)
	}
	_, cfg, err := platform.StackConfig(root, stack, overrides)
	if err != nil {
		return nil, "", fmt.Errorf("plan %s: %w", stack, err)
	}
	if cfg["shopmesh:imageTag"] == "" && cfg["shopmesh:workloads"] == "true" {
		if sha, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
			with := map[string]string{}
			for k, v := range overrides {
				with[k] = v
			}
			with["imageTag"] = strings.TrimSpace(string(sha))
			overrides = with
			note = fmt.Sprintf("imageTag is not set in Pulumi.%s.yaml: planned with this commit's tag %s, as make deploy would deploy it", stack, with["imageTag"])
		}
	}
	program := platform.Program
	if project, _, _ := platform.StackConfig(root, stack, nil); project == platform.AccountProject {
		program = platform.AccountProgram
	}
	plan, err = platform.PlanStack(root, stack, overrides, program)
	if err != nil {
		return nil, "", fmt.Errorf("plan %s: %w", stack, err)
	}
	return plan, note, nil
}

// projectRoot finds the nearest folder at or above the current one holding Pulumi.yaml.
func projectRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no Pulumi.yaml in this folder or above; run from the repository or pass --dir")
		}
		dir = parent
	}
}

func printTree(w io.Writer, plan *platform.Plan) {
	children := map[string][]platform.Resource{}
	known := map[string]bool{}
	for _, r := range plan.Resources {
		known[r.URN] = true
	}
	for _, r := range plan.Resources {
		parent := r.Parent
		if !known[parent] {
			parent = "" // the stack itself
		}
		children[parent] = append(children[parent], r)
	}
	for _, list := range children {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Type != list[j].Type {
				return list[i].Type < list[j].Type
			}
			return list[i].Name < list[j].Name
		})
	}
	fmt.Fprintf(w, "stack %s/%s (offline plan: no AWS, no Pulumi CLI)\n", plan.Project, plan.Stack)
	var walk func(parent, indent string)
	walk = func(parent, indent string) {
		list := children[parent]
		for i, r := range list {
			branch, next := "├─ ", "│  "
			if i == len(list)-1 {
				branch, next = "└─ ", "   "
			}
			note := ""
			if r.StandIn {
				note = "  (stand-in for a pulumi-eks child)"
			}
			fmt.Fprintf(w, "%s%s%s  %s%s\n", indent, branch, r.Type, r.Name, note)
			walk(r.URN, indent+next)
		}
	}
	walk("", "")

	counts := plan.Counts()
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintf(w, "\n%d resources by type:\n", len(plan.Resources))
	for _, t := range types {
		fmt.Fprintf(w, "  %4d  %s\n", counts[t], t)
	}
	if len(plan.Outputs) > 0 {
		fmt.Fprintln(w, "\noutputs:")
		for _, name := range sortedOutputNames(plan.Outputs) {
			v := fmt.Sprint(plan.Outputs[name])
			if name == "kubeconfig" {
				v = "[secret]"
			}
			fmt.Fprintf(w, "  %s: %s\n", name, strings.TrimSpace(v))
		}
	}
}

func sortedOutputNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
