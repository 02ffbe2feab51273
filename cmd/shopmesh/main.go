// Command shopmesh is the operator's tool: `shopmesh run` starts the whole shop locally;
// `shopmesh plan` shows what the Pulumi program declares for a stack, offline.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shopmesh/shopmesh/services/localshop"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "shopmesh:", err)
		os.Exit(1)
	}
}

const usage = `usage: shopmesh <command> [flags]

commands:
  run     start users, products and orders on this machine (see README: Quick start)
  plan    --stack dev|prod [--json]: the Pulumi program's resources for a stack, offline
  scenario ratelimit [flags]: replay the rate-limiting test plan against the gateway
  scenario mtls: show mutual TLS between the services, and five calls it refuses
  scenario faults: order traffic through crashes and outages, and the invariants after each (PostgreSQL and Redis)
  certs   init|issue|show: the platform CA and workload certificates (SPIFFE identities)
  policy  check --stack dev|prod | FILE: the policy pack on a plan, preview or export; list: the rules
  rehearse --stack dev|prod: run what the stack renders on this machine, behind stand-ins of AWS and Istio (DATABASE_URL, REDIS_URL)
  help    show this text
`

var errUsage = errors.New("unknown command; run 'shopmesh help'")

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stdout, usage)
		return errUsage
	}
	switch args[1] {
	case "run":
		return localshop.Run(ctx, args[2:], getenv, stdout)
	case "plan":
		return runPlan(args[2:], stdout)
	case "certs":
		return runCerts(args[2:], stdout, time.Now())
	case "policy":
		return runPolicy(ctx, args[2:], os.Stdin, stdout)
	case "scenario":
		return runScenario(ctx, args[2:], getenv, stdout)
	case "rehearse":
		return runRehearse(ctx, args[2:], getenv, stdout)
	case serviceCommand: // the fault scenario's service processes
		return runService(ctx, args[2:], getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("%q: %w", args[1], errUsage)
}
