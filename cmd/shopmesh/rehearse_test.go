package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/rehearsal"
	"github.com/shopmesh/shopmesh/stacks/platform"
)

// engines are the PostgreSQL and Redis a rehearsal runs against; without them the test is
// skipped, except under CI, where it must run.
func engines(t *testing.T) rehearsal.Options {
	t.Helper()
	o := rehearsal.Options{Postgres: os.Getenv("DATABASE_URL"), Redis: os.Getenv("REDIS_URL"), HealthScale: 5}
	if o.Postgres == "" || o.Redis == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("DATABASE_URL and REDIS_URL are not set under CI: the rehearsal must run (see .ci/run)")
		}
		t.Skip("DATABASE_URL or REDIS_URL is not set; skipping the rehearsal (see README: Quick start)")
	}
	return o
}

func rehearsalStack(t *testing.T, stack string) rehearsal.Stack {
	t.Helper()
	plan, _, err := planStack("../..", stack, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := stackFromPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRehearsal runs what dev and prod render, with the real binaries, PostgreSQL and Redis,
// behind the stand-ins of API Gateway, the NLB and the sidecars: every scenario must hold.
func TestRehearsal(t *testing.T) {
	o := engines(t)
	bin, err := buildServices(context.Background(), "../..")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	o.Bin = bin
	for _, stack := range []string{"dev", "prod"} {
		t.Run(stack, func(t *testing.T) {
			s := rehearsalStack(t, stack)
			var out bytes.Buffer
			o := o
			o.Out = &out
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			if err := rehearsal.Run(ctx, s, o); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			for _, want := range []string{"scenario order", "scenario shared-limit", "scenario client-address", "scenario rollout", "no divergence"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}

	// Each fault the rehearsal exists for, put back into dev's rendered configuration, must make
	// it fail and name what to fix.
	for _, tt := range []struct {
		name      string
		scenarios []string
		breakIt   func(t *testing.T, s *rehearsal.Stack)
		want      []string
	}{
		{"the cache user cannot run the limiter's script", []string{"shared-limit"}, func(t *testing.T, s *rehearsal.Stack) {
			s.Cache.AccessString = "on ~rate:* -@all +@read +@write +@scripting +@connection -@dangerous" // before issue 28
		}, []string{"gateway-0 never became ready", "rate-limit-cache", "accessString"}},
		{"the gateway believes no proxy", []string{"client-address"}, func(t *testing.T, s *rehearsal.Stack) {
			delete(workload(t, s, "gateway").Env, "TRUSTED_PROXIES")
		}, []string{"sees one address for every caller", "TRUSTED_PROXIES"}},
		{"API Gateway passes the client's X-Forwarded-For", []string{"client-address"}, func(t *testing.T, s *rehearsal.Stack) {
			for i := range s.Edge.Methods {
				delete(s.Edge.Methods[i].HeaderMappings, platform.ClientAddressHeader)
			}
		}, []string{"fresh address", "context.identity.sourceIp"}},
		{"reservations shorter than the confirmation margin", []string{"order"}, func(t *testing.T, s *rehearsal.Stack) {
			// Products' setting, which orders reads too to check the pair.
			workload(t, s, "products").Env["RESERVATION_TTL"] = "20s"
			workload(t, s, "orders").Env["RESERVATION_TTL"] = "20s"
		}, []string{"products-0 exited before it was ready", "RESERVATION_TTL", "CONFIRM_MARGIN"}},
	} {
		t.Run("fails when "+tt.name, func(t *testing.T) {
			s := rehearsalStack(t, "dev")
			tt.breakIt(t, &s)
			var out bytes.Buffer
			o := o
			o.Out, o.Scenarios = &out, tt.scenarios
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := rehearsal.Run(ctx, s, o)
			if err == nil {
				t.Fatalf("the rehearsal passed:\n%s", out.String())
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the failure does not say %q:\n%v", want, err)
				}
			}
		})
	}
}

func workload(t *testing.T, s *rehearsal.Stack, name string) *rehearsal.Workload {
	t.Helper()
	w, err := s.Workload(name)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRehearseCommandSaysWhatToFix(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	engines := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1/0"}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"shopmesh", "rehearse"}, engines, "usage: shopmesh rehearse --stack dev|prod"},
		{[]string{"shopmesh", "rehearse", "--stack", "dev"}, nil, "set DATABASE_URL"},
		{[]string{"shopmesh", "rehearse", "--stack", "dev", "--scenarios", "order,chaos"}, engines, `no scenario "chaos" (there are order, shared-limit`},
		{[]string{"shopmesh", "rehearse", "--stack", "staging"}, engines, `no stack "staging"`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, env(tt.env), &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want one saying %q", tt.args, err, tt.want)
		}
	}
}
