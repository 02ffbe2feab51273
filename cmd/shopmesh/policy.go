package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/shopmesh/shopmesh/policies"
)

const policyUsage = `usage:
  shopmesh policy check --stack dev|prod [--dir DIR]   the pack on the program's offline plan
  shopmesh policy check FILE|-                          on shopmesh plan --json, pulumi preview --json or pulumi stack export
  shopmesh policy list                                  the rules`

// errViolations makes the command exit 1 after the table has been printed.
var errViolations = errors.New("mandatory policy violations")

// runPolicy evaluates the policy pack (policies/*.rego) on a stack's resources.
func runPolicy(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(policyUsage)
	}
	pack, err := policies.Load(ctx)
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLEVEL\tSEVERITY\tSCOPE\tRULE\tTITLE")
		for _, r := range pack.Rules {
			scope := "resource"
			if r.Stack {
				scope = "stack"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Level, r.Severity, scope, r.Name, r.Title)
		}
		return tw.Flush()
	case "check":
	default:
		return fmt.Errorf("unknown policy command %q\n%s", args[0], policyUsage)
	}
	fs := flag.NewFlagSet("shopmesh policy check", flag.ContinueOnError)
	fs.SetOutput(stdout)
	stack := fs.String("stack", "", "plan this stack offline and check it")
	dir := fs.String("dir", "", "folder holding Pulumi.yaml (default: the nearest one above the current folder)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var data []byte
	source := ""
	switch {
	case *stack != "" && fs.NArg() == 0:
		plan, _, err := planStack(*dir, *stack, nil)
		if err != nil {
			return err
		}
		if data, err = json.Marshal(plan.Resources); err != nil {
			return err
		}
		source = "the offline plan of " + *stack
	case *stack == "" && fs.NArg() == 1:
		source = fs.Arg(0)
		if source == "-" {
			data, err = io.ReadAll(stdin)
			source = "standard input"
		} else {
			data, err = os.ReadFile(source)
		}
		if err != nil {
			return err
		}
	default:
		return errors.New(policyUsage)
	}
	resources, format, err := policies.Read(data)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	violations, err := pack.Check(ctx, resources)
	if err != nil {
		return err
	}
	mandatory := 0
	if len(violations) > 0 {
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LEVEL\tID\tSEVERITY\tRESOURCE\tMESSAGE")
		for _, v := range violations {
			if v.Rule.Level == policies.Mandatory {
				mandatory++
			}
			res := "(stack)"
			if v.Resource != "" {
				res = v.Resource[strings.LastIndex(v.Resource, "::")+2:]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Rule.Level, v.Rule.ID, v.Rule.Severity, res, v.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "%d rules on %d resources from %s (%s): %d mandatory, %d advisory\n",
		len(pack.Rules), len(resources), source, format, mandatory, len(violations)-mandatory)
	told := map[string]bool{}
	for _, v := range violations {
		if v.Rule.Level == policies.Mandatory && !told[v.Rule.ID] {
			told[v.Rule.ID] = true
			fmt.Fprintf(stdout, "  %s: %s\n", v.Rule.ID, v.Rule.Remediation)
		}
	}
	if mandatory > 0 {
		return errViolations
	}
	return nil
}
