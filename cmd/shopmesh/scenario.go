package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/shopmesh/shopmesh/services/scenario"
)

// runScenario dispatches `shopmesh scenario <name>`.
func runScenario(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "ratelimit" {
		return errors.New("usage: shopmesh scenario ratelimit [flags] (the mTLS scenario comes with native mTLS)")
	}
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
