package delivery

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreflightRefusesAnInertPolicyGate runs scripts/pulumi-preflight.sh with the pulumi CLI
// replaced by a stub that reports a version and the installed analyzers and records installs:
// a CLI older than v3.227.0 is refused, an analyzer older than v0.2.0 (which gives rules only
// the properties and runs no stack rules) is replaced by the pinned one, a new enough one is
// kept, and an install that does not take fails.
func TestPreflightRefusesAnInertPolicyGate(t *testing.T) {
	bin := t.TempDir()
	state := t.TempDir()
	stub := `#!/usr/bin/env bash
case "$1 $2" in
  "version "*) echo "$STUB_CLI" ;;
  "plugin ls")
    echo "NAME        KIND      VERSION  SIZE   INSTALLED  LAST USED"
    cat "$STUB_STATE/plugins" 2>/dev/null ;;
  "plugin install")
    echo "$3 $4 $5" >> "$STUB_STATE/installs"
    [ -n "$STUB_INSTALL_FAILS" ] || echo "$4        $3  ${5#v}   40 MB  now        now" >> "$STUB_STATE/plugins" ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "pulumi"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(cli, installed, installFails string) (out, installs string, err error) {
		_ = os.Remove(filepath.Join(state, "installs"))
		plugins := ""
		if installed != "" {
			plugins = "policy-opa  analyzer  " + installed + "   40 MB  1 day ago  1 day ago\nkubernetes  resource  4.30.0   90 MB  1 day ago  1 day ago\n"
		}
		if err := os.WriteFile(filepath.Join(state, "plugins"), []byte(plugins), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "scripts/pulumi-preflight.sh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STUB_STATE="+state, "STUB_CLI="+cli, "STUB_INSTALL_FAILS="+installFails)
		b, err := cmd.CombinedOutput()
		i, _ := os.ReadFile(filepath.Join(state, "installs"))
		return string(b), string(i), err
	}
	for _, tt := range []struct {
		name, cli, installed, installFails string
		ok                                 bool
		wantOut, wantInstall               string
	}{
		{"old CLI", "v3.226.1", "1.1.0", "", false, "older than v3.227.0", ""},
		{"CLI of two digits minor", "v3.99.0", "1.1.0", "", false, "older than v3.227.0", ""},
		{"no analyzer", "v3.240.0", "", "", true, "policy-opa v1.1.0", "analyzer policy-opa v1.1.0"},
		{"analyzer without metadata or stack rules", "v3.240.0", "0.1.0", "", true, "policy-opa v1.1.0", "analyzer policy-opa v1.1.0"},
		{"first analyzer with both", "v3.227.0", "0.2.0", "", true, "policy-opa v0.2.0", ""},
		{"newer analyzer", "v3.263.0", "1.1.1", "", true, "policy-opa v1.1.1", ""},
		{"install that does not take", "v3.240.0", "0.1.0", "yes", false, "after installing v1.1.0", "analyzer policy-opa v1.1.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, installs, err := run(tt.cli, tt.installed, tt.installFails)
			if (err == nil) != tt.ok || !strings.Contains(out, tt.wantOut) || strings.TrimSpace(installs) != tt.wantInstall {
				t.Errorf("err %v, installs %q, output\n%s\nwant ok=%v, output naming %q, installs %q", err, installs, out, tt.ok, tt.wantOut, tt.wantInstall)
			}
		})
	}
}

// TestPolicyGatesRunThePreflight: every place that runs the policy pack with the real CLI checks
// the CLI and the analyzer first.
func TestPolicyGatesRunThePreflight(t *testing.T) {
	// The deploy workflow runs the pack through make deploy (scripts/deploy.sh).
	for f, runsPack := range map[string]string{
		"scripts/deploy.sh":                  "--policy-pack",
		".github/workflows/deploy.yml":       "make deploy",
		".github/workflows/pull-request.yml": "--policy-pack",
	} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		check := strings.Index(s, "scripts/pulumi-preflight.sh")
		gate := strings.Index(s, runsPack)
		if check < 0 || gate < 0 || check > gate {
			t.Errorf("%s: the preflight at %d, the first --policy-pack at %d: want the preflight before the pack runs", f, check, gate)
		}
		if strings.Contains(s, "plugin install analyzer policy-opa\n") {
			t.Errorf("%s installs the analyzer without a version: whatever is newest, or an old one already there, runs the pack", f)
		}
	}
}
