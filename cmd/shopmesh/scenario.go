package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/shopmesh/shopmesh/services/localshop"
	"github.com/shopmesh/shopmesh/services/scenario"
)

const scenarioUsage = "usage: shopmesh scenario ratelimit [flags] | shopmesh scenario mtls | shopmesh scenario faults [flags]"

// runScenario dispatches `shopmesh scenario <name>`.
func runScenario(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(scenarioUsage)
	}
	switch args[0] {
	case "ratelimit":
		return runRateLimit(ctx, args, stdout)
	case "mtls":
		return runMTLS(ctx, args, getenv, stdout)
	case "faults":
		return runFaults(ctx, args, getenv, stdout)
	}
	return fmt.Errorf("unknown scenario %q; %s", args[0], scenarioUsage)
}

func runRateLimit(ctx context.Context, args []string, stdout io.Writer) error {
	o := scenario.DefaultRateLimitOptions()
	fs := flag.NewFlagSet("shopmesh scenario ratelimit", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&o.Target, "target", o.Target, "base URL to load: the local gateway, or an API Gateway stage URL")
	fs.Float64Var(&o.TimeScale, "time-scale", o.TimeScale, "multiply every phase's duration (0.1 runs the plan in a tenth of the time)")
	fs.Float64Var(&o.RateScale, "rate-scale", o.RateScale, "multiply every offered rate")
	fs.Float64Var(&o.LimitRate, "limit-rate", o.LimitRate, "the limit under test in requests/s (for the ideal column)")
	fs.IntVar(&o.LimitBurst, "limit-burst", o.LimitBurst, "the burst of the limit under test")
	fs.StringVar(&o.AdminEmail, "admin-email", o.AdminEmail, "admin account used to create a product with ample stock (empty: use the first product)")
	fs.StringVar(&o.AdminPassword, "admin-password", o.AdminPassword, "its password")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.TimeScale <= 0 || o.RateScale <= 0 || o.LimitRate <= 0 || o.LimitBurst < 1 {
		return errors.New("time-scale, rate-scale and limit-rate must be positive and limit-burst at least 1")
	}
	if !*quiet {
		o.Progress = stdout
	}
	fmt.Fprintf(stdout, "rate-limit scenario against %s: POST /orders, 50/s, a burst, then 150/s (time ×%g, rate ×%g)\n",
		o.Target, o.TimeScale, o.RateScale)
	phases, err := scenario.RateLimit(ctx, o)
	fmt.Fprintln(stdout)
	scenario.PrintRateLimit(stdout, phases, o)
	return err
}

// runMTLS runs the mTLS scenario against the local platform (where make run puts it, or where
// the same variables say), and starts one in this process when its gateway does not answer.
func runMTLS(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shopmesh scenario mtls", flag.ContinueOnError)
	fs.SetOutput(stdout)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("shopmesh scenario mtls takes no arguments; set the addresses as for shopmesh run")
	}
	layout, err := localshop.ReadLayout(getenv)
	if err != nil {
		return err
	}
	if !layout.TLS {
		return errors.New("the mTLS scenario needs TLS_MODE=mtls (the default)")
	}
	gateway := "http://" + layout.Gateway.Addr
	if scenario.Answers(ctx, gateway+"/healthz") {
		fmt.Fprintf(stdout, "using the platform at %s (PKI %s)\n\n", gateway, layout.PKIDir)
	} else {
		fmt.Fprintf(stdout, "no platform at %s: starting one in this process (PKI %s)\n\n", gateway, layout.PKIDir)
		stop, err := startShop(ctx, layout, getenv)
		if err != nil {
			return err
		}
		defer stop()
	}
	o := scenario.MTLSOptions{Gateway: gateway, PKIDir: layout.PKIDir, Namespace: localshop.Namespace}
	for _, e := range layout.Services() {
		o.Services = append(o.Services, scenario.Workload{Name: e.Name, Addr: e.Addr, Health: e.Health})
	}
	return scenario.MTLS(ctx, o, stdout)
}

// startShop runs the local shop until stop is called, its logs discarded, and waits until
// every service is ready.
func startShop(ctx context.Context, layout localshop.Layout, getenv func(string) string) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- localshop.Run(ctx, nil, getenv, io.Discard) }()
	stop = func() { cancel(); <-done }
	deadline := time.Now().Add(30 * time.Second)
	for _, e := range append(layout.Services(), layout.Gateway) {
		for !scenario.Answers(ctx, layout.ProbeURL(e)+"/readyz") {
			select {
			case err := <-done:
				cancel()
				return nil, fmt.Errorf("the local platform stopped: %w", err)
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stop()
				return nil, fmt.Errorf("%s was not ready at %s within 30s", e.Name, layout.ProbeURL(e))
			}
		}
	}
	return stop, nil
}

// runFaults runs the fault scenario: its own shop, each service a process of this binary, on
// fresh schemas of DATABASE_URL, with Redis behind a proxy it can cut.
func runFaults(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o := scenario.FaultOptions{DatabaseURL: getenv("DATABASE_URL"), RedisURL: getenv("REDIS_URL"), Workers: 4, Phase: 6 * time.Second}
	fs := flag.NewFlagSet("shopmesh scenario faults", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.IntVar(&o.Workers, "workers", o.Workers, "customers placing orders without pause")
	fs.DurationVar(&o.Phase, "phase", o.Phase, "traffic per fault; the fault comes a third of the way in")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch {
	case !faultsBuild:
		return errors.New("this binary has no fault injection: run the scenario with make scenario-faults (go run -tags faults ./cmd/shopmesh scenario faults)")
	case o.DatabaseURL == "":
		return errors.New("the fault scenario needs PostgreSQL: set DATABASE_URL (see README, Quick start); it creates and drops its own schemas")
	case o.Workers < 1 || o.Phase < 3*time.Second:
		return errors.New("workers must be at least 1 and phase at least 3s")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	o.Executable = exe
	if !*quiet {
		o.Progress = stdout
	}
	fmt.Fprintf(stdout, "fault scenario: %d customers ordering through the gateway; each fault %s into a %s phase\n", o.Workers, o.Phase/3, o.Phase)
	_, err = scenario.Faults(ctx, o, stdout)
	return err
}
