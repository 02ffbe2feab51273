package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCommands(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		args    []string
		wantErr error
		wantOut string
	}{
		{[]string{"shopmesh"}, errUsage, "commands:"},
		{[]string{"shopmesh", "launch"}, errUsage, ""},
		{[]string{"shopmesh", "help"}, nil, "run "},
		{[]string{"shopmesh", "run", "extra"}, nil, ""},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, none, &out)
		switch {
		case tt.args[len(tt.args)-1] == "extra":
			if err == nil || !strings.Contains(err.Error(), "takes no arguments") {
				t.Errorf("%v: err = %v, want 'takes no arguments'", tt.args, err)
			}
		case !errors.Is(err, tt.wantErr):
			t.Errorf("%v: err = %v, want %v", tt.args, err, tt.wantErr)
		}
		if !strings.Contains(out.String(), tt.wantOut) {
			t.Errorf("%v: output %q lacks %q", tt.args, out.String(), tt.wantOut)
		}
	}
}

func TestPlanCommand(t *testing.T) {
	none := func(string) string { return "" }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"shopmesh", "plan", "--stack", "prod", "--dir", "../.."}, none, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stack shopmesh/prod", "shopmesh:cluster:Cluster", "resources by type:", "aws:wafv2/webAcl:WebAcl", "kubeconfig: [secret]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q", want)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"shopmesh", "plan", "--stack", "dev", "--json", "--dir", "../.."}, none, &out); err != nil {
		t.Fatal(err)
	}
	var records []struct {
		URN, Type, Name, Parent string
		Inputs                  map[string]any
	}
	if err := json.Unmarshal(out.Bytes(), &records); err != nil || len(records) < 100 {
		t.Fatalf("--json gave %d records (%v)", len(records), err)
	}
	for _, r := range records {
		if r.URN == "" || r.Type == "" || r.Name == "" || r.Inputs == nil {
			t.Fatalf("incomplete record %+v", r)
		}
	}
	for _, bad := range [][]string{{"plan"}, {"plan", "--stack", "staging", "--dir", "../.."}} {
		if err := run(context.Background(), append([]string{"shopmesh"}, bad...), none, &out); err == nil {
			t.Errorf("shopmesh %v succeeded", bad)
		}
	}
}

func TestCertsCommands(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	var out bytes.Buffer
	if err := runCerts([]string{"init", "--dir", dir}, &out, now); err != nil || !strings.Contains(out.String(), "shopmesh platform CA") {
		t.Fatalf("init: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := runCerts([]string{"issue", "--dir", dir, "--service", "orders", "--ttl", "2h"}, &out, now); err != nil {
		t.Fatalf("issue: %v", err)
	}
	out.Reset()
	if err := runCerts([]string{"show", dir + "/orders.pem", dir + "/ca.pem"}, &out, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"identity:    spiffe://shopmesh/ns/shop/sa/orders", "sha256:", "ca:          true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
	for _, bad := range [][]string{{}, {"issue", "--dir", dir}, {"issue", "--dir", t.TempDir(), "--service", "x"}, {"show"}, {"rotate"}, {"init", "--dir", dir}} {
		if err := runCerts(bad, &out, now); err == nil {
			t.Errorf("certs %v succeeded", bad)
		}
	}
}

// TestScenarioMTLSStartsItsOwnPlatform: with nothing listening at the layout's gateway, the
// command starts the shop itself, runs every expectation and stops it again.
func TestScenarioMTLSStartsItsOwnPlatform(t *testing.T) {
	env := map[string]string{"SHOPMESH_PKI_DIR": filepath.Join(t.TempDir(), "pki")}
	for _, prefix := range []string{"GATEWAY_", "USERS_", "PRODUCTS_", "ORDERS_"} {
		env[prefix+"HTTP_ADDR"] = freeAddr(t)
		env[prefix+"HEALTH_ADDR"] = freeAddr(t)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"shopmesh", "scenario", "mtls"}, func(k string) string { return env[k] }, &out)
	if err != nil {
		t.Fatalf("scenario mtls: %v\n%s", err, out.String())
	}
	for _, want := range []string{"starting one in this process", "1. configuration", "2. success", "3. refused", "all expectations met"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if r, err := http.Get("http://" + env["GATEWAY_HTTP_ADDR"] + "/healthz"); err == nil {
		r.Body.Close()
		t.Error("the platform the scenario started is still running")
	}

	env["TLS_MODE"] = "off"
	if err := run(context.Background(), []string{"shopmesh", "scenario", "mtls"}, func(k string) string { return env[k] }, &out); err == nil || !strings.Contains(err.Error(), "TLS_MODE=mtls") {
		t.Errorf("TLS_MODE=off: err = %v, want one asking for mtls", err)
	}
	if err := run(context.Background(), []string{"shopmesh", "scenario", "chaos"}, func(k string) string { return env[k] }, &out); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Errorf("unknown scenario: err = %v", err)
	}
}

// freeAddr is a loopback address nothing listens on (services/internal/webtest is out of reach
// from cmd/).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestPolicyCommand(t *testing.T) {
	none := func(string) string { return "" }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"shopmesh", "policy", "check", "--stack", "prod", "--dir", "../.."}, none, &out); err != nil {
		t.Fatalf("prod: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "0 mandatory, 1 advisory") || !strings.Contains(out.String(), "SHOP-ISTIO-004") {
		t.Errorf("prod report:\n%s", out.String())
	}

	// A preview in which the database became public fails, naming the rule and the fix.
	preview := `{"steps": [{"op": "update", "newState": {"type": "aws:rds/instance:Instance",
	  "urn": "urn:pulumi:prod::shopmesh::shopmesh:database:Database$aws:rds/instance:Instance::database",
	  "inputs": {"publiclyAccessible": true, "storageEncrypted": true, "backupRetentionPeriod": 14, "multiAz": true,
	    "deletionProtection": true, "manageMasterUserPassword": true, "tags": {"project": "shopmesh", "environment": "prod"}}}}]}`
	file := filepath.Join(t.TempDir(), "preview.json")
	if err := os.WriteFile(file, []byte(preview), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"shopmesh", "policy", "check", file}, none, &out)
	if !errors.Is(err, errViolations) || !strings.Contains(out.String(), "SHOP-RDS-002") || !strings.Contains(out.String(), "Set publiclyAccessible to false") ||
		!strings.Contains(out.String(), "(preview): 1 mandatory") {
		t.Errorf("public database: err %v\n%s", err, out.String())
	}

	out.Reset()
	if err := run(context.Background(), []string{"shopmesh", "policy", "list"}, none, &out); err != nil || !strings.Contains(out.String(), "SHOP-EKS-001") {
		t.Errorf("policy list: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{"policy"}, {"policy", "check"}, {"policy", "check", "--stack", "qa", "--dir", "../.."}, {"policy", "audit"}} {
		if err := run(context.Background(), append([]string{"shopmesh"}, args...), none, &out); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
