package delivery

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushNeverBuildsAnotherCommit runs scripts/push-images.sh with pulumi, aws and docker
// replaced by stubs that record their calls. An image missing from ECR is built only from the
// checked-out commit, unchanged: a rollback to a commit whose images expired fails instead of
// pushing this checkout's code under the old, immutable tag.
func TestPushNeverBuildsAnotherCommit(t *testing.T) {
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err) // the script needs one as much as the test
	}
	status, _ := exec.Command("git", "-C", root, "status", "--porcelain").Output()
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "calls")
	stub := func(name, body string) {
		script := "#!/usr/bin/env bash\necho \"" + name + " $*\" >> \"$STUB_LOG\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stub("pulumi", `echo '{"gateway": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shopmesh-dev-gateway"}'`)
	stub("aws", `case "$2" in get-login-password) echo secret ;; describe-images) exit "$STUB_ECR_MISSING" ;; esac`)
	// No builder of the platform's own yet: make push must create one that can push
	// multi-platform images (the docker-container driver).
	stub("docker", `[ "$1 $2" != "buildx inspect" ] || exit 1; cat > /dev/null; exit 0`)
	push := func(tag, missing string) (string, string, error) {
		_ = os.Remove(log)
		cmd := exec.Command("bash", "scripts/push-images.sh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STUB_LOG="+log, "STUB_ECR_MISSING="+missing,
			"STACK=dev", "IMAGE_TAG="+tag, "SERVICES=gateway")
		out, err := cmd.CombinedOutput()
		calls, _ := os.ReadFile(log)
		return string(out), string(calls), err
	}
	const other = "0123456789abcdef0123456789abcdef01234567"
	out, calls, err := push(other, "1")
	if err == nil || strings.Contains(calls, "docker buildx build") || !strings.Contains(out, "not the checked-out commit") {
		t.Errorf("a missing image of another commit: %v, calls\n%s\noutput\n%s\nwant a failure naming the commit, and no build", err, calls, out)
	}
	out, calls, err = push(other, "0")
	if err != nil || strings.Contains(calls, "docker buildx build") || !strings.Contains(out, "exists") {
		t.Errorf("an image of another commit that ECR has: %v, calls\n%s\noutput\n%s\nwant success without a build", err, calls, out)
	}
	out, calls, err = push(strings.TrimSpace(string(head)), "1")
	if len(status) == 0 { // a clean checkout, as CI's: its own commit is built
		if err != nil || !strings.Contains(calls, "docker buildx build --builder shopmesh") ||
			!strings.Contains(calls, "docker buildx create --name shopmesh --driver docker-container") {
			t.Errorf("the checked-out commit, clean: %v, calls\n%s\noutput\n%s\nwant it built by a docker-container builder", err, calls, out)
		}
	} else if err == nil || strings.Contains(calls, "docker buildx build") || !strings.Contains(out, "changes the commit does not") {
		t.Errorf("the checked-out commit with uncommitted changes: %v, calls\n%s\noutput\n%s\nwant a failure and no build", err, calls, out)
	}
}
