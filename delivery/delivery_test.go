package delivery

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const root = ".."

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeVar is the value of a simple `NAME := value` or `NAME ?= value` line of the Makefile.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s*[:?]?=\s*(.*)$`).FindStringSubmatch(read(t, "Makefile"))
	if m == nil {
		t.Fatalf("Makefile does not set %s", name)
	}
	return strings.TrimSpace(m[1])
}

func services(t *testing.T) []string { return strings.Fields(makeVar(t, "SERVICES")) }

func TestMakefileServicesAreTheServiceBinaries(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var binaries []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "shopmesh" && e.Name() != "localshop" { // the operator's tools are not deployed
			binaries = append(binaries, e.Name())
		}
	}
	got := slices.Sorted(slices.Values(services(t)))
	if strings.Join(got, " ") != strings.Join(binaries, " ") {
		t.Errorf("Makefile SERVICES = %v, cmd/ has %v", got, binaries)
	}
}

// TestDockerfileBuildsLikeTheMakefile: the image's build stage compiles the way make build
// does, statically, for the target platform, and the image runs it as non-root.
func TestDockerfileBuildsLikeTheMakefile(t *testing.T) {
	df := read(t, "Dockerfile")
	flags := makeVar(t, "BUILD_FLAGS")
	if !strings.Contains(read(t, "Makefile"), "CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS)") {
		t.Error("make build does not build with CGO_ENABLED=0 and $(BUILD_FLAGS)")
	}
	var build string
	for _, line := range strings.Split(strings.ReplaceAll(df, "\\\n", " "), "\n") {
		if strings.Contains(line, "go build") {
			build = line
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "go build " + flags + " ", "./cmd/$SERVICE"} {
		if !strings.Contains(build, want) {
			t.Errorf("the Dockerfile's build command %q lacks %q", build, want)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM --platform=\$BUILDPLATFORM golang:\$\{GO_VERSION\}\S* AS build$`),
		regexp.MustCompile(`(?m)^FROM gcr\.io/distroless/static\S*:nonroot$`),
		regexp.MustCompile(`(?m)^USER [1-9][0-9]*:[1-9][0-9]*$`),
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/service"\]$`),
		regexp.MustCompile(`(?m)^ARG SERVICE$`),
	} {
		if !want.MatchString(df) {
			t.Errorf("Dockerfile has no line matching %s", want)
		}
	}
	goVersion := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(df)
	mod := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(read(t, "go.mod"))
	if goVersion == nil || mod == nil || goVersion[1] != mod[1] {
		t.Errorf("Dockerfile GO_VERSION %v does not match go.mod's go %v", goVersion, mod)
	}
}

func TestDockerignoreKeepsTheContextToSources(t *testing.T) {
	ignored := map[string]bool{}
	for _, line := range strings.Split(read(t, ".dockerignore"), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			ignored[line] = true
		}
	}
	for _, must := range []string{".git", ".shopmesh", "bin"} {
		if !ignored[must] {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "services", "*.go", "**/*.go"} {
		if ignored[needed] {
			t.Errorf(".dockerignore excludes %s, which the build needs", needed)
		}
	}
}

// TestServicesBuildStaticForBothArchitectures cross-compiles every service as the image build
// does and checks each binary: an ELF for the right machine, no dynamic loader, no libraries.
func TestServicesBuildStaticForBothArchitectures(t *testing.T) {
	flags := strings.Fields(makeVar(t, "BUILD_FLAGS"))
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		t.Run(arch, func(t *testing.T) {
			out := t.TempDir()
			args := append(append([]string{"build"}, flags...), "-o", out+string(filepath.Separator))
			for _, s := range services(t) {
				args = append(args, "./cmd/"+s)
			}
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
			}
			for _, s := range services(t) {
				f, err := elf.Open(filepath.Join(out, s))
				if err != nil {
					t.Fatalf("%s: %v", s, err)
				}
				libs, _ := f.ImportedLibraries()
				interp := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
				if f.Machine != machine || interp || len(libs) > 0 {
					t.Errorf("%s/%s: machine %v, dynamic loader %v, libraries %v; want a static %v binary", s, arch, f.Machine, interp, libs, machine)
				}
				f.Close()
			}
		})
	}
}

type workflow struct {
	On          map[string]any    `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Jobs        map[string]struct {
		Uses        string            `yaml:"uses"`
		Needs       any               `yaml:"needs"`
		Environment string            `yaml:"environment"`
		Permissions map[string]string `yaml:"permissions"`
		Strategy    struct {
			Matrix map[string][]string `yaml:"matrix"`
		} `yaml:"strategy"`
		Services map[string]any    `yaml:"services"`
		Env      map[string]string `yaml:"env"`
		Steps    []struct {
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			With map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func loadWorkflow(t *testing.T, name string) (workflow, string) {
	t.Helper()
	text := read(t, filepath.Join(".github", "workflows", name))
	var w workflow
	if err := yaml.Unmarshal([]byte(text), &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return w, text
}

func TestPipelineKeepsItsPromises(t *testing.T) {
	checks, _ := loadWorkflow(t, "checks.yml")
	job := checks.Jobs["lint-and-test"]
	var runs []string
	for _, s := range job.Steps {
		runs = append(runs, s.Run)
	}
	if !slices.Contains(runs, "make lint") || !slices.Contains(runs, "make test") {
		t.Errorf("checks run %q, want make lint and make test", runs)
	}
	if job.Services["postgres"] == nil || job.Services["redis"] == nil || job.Env["CI"] != "true" ||
		!strings.HasPrefix(job.Env["DATABASE_URL"], "postgres://") || !strings.HasPrefix(job.Env["REDIS_URL"], "redis://") {
		t.Errorf("checks must run the database tests against service containers, with CI set: %+v", job.Env)
	}

	pr, _ := loadWorkflow(t, "pull-request.yml")
	if pr.On["pull_request"] == nil || pr.Jobs["checks"].Uses != "./.github/workflows/checks.yml" {
		t.Error("pull requests must run the checks workflow")
	}
	preview := pr.Jobs["preview"]
	if strings.Join(preview.Strategy.Matrix["stack"], ",") != "dev,prod" || preview.Permissions["id-token"] != "write" {
		t.Errorf("preview: stacks %v, permissions %v", preview.Strategy.Matrix["stack"], preview.Permissions)
	}
	if !slices.ContainsFunc(preview.Steps, func(s struct {
		Uses string            `yaml:"uses"`
		Run  string            `yaml:"run"`
		With map[string]string `yaml:"with"`
	}) bool {
		return strings.HasPrefix(s.Uses, "pulumi/actions@") && s.With["command"] == "preview" &&
			s.With["policyPacks"] == "./policies" && s.With["comment-on-pr"] == "true"
	}) {
		t.Error("the preview must run pulumi preview with ./policies and comment on the pull request")
	}

	deploy, text := loadWorkflow(t, "deploy.yml")
	push, _ := deploy.On["push"].(map[string]any)
	if push == nil || !slices.Contains(toStrings(push["branches"]), "main") || !slices.Contains(toStrings(push["tags"]), "v*") {
		t.Errorf("deploy must run on main and on release tags: %v", deploy.On["push"])
	}
	d := deploy.Jobs["deploy"]
	if !strings.Contains(d.Environment, "'prod'") || d.Permissions["id-token"] != "write" {
		t.Errorf("deploy: environment %q (prod behind its reviewers), permissions %v", d.Environment, d.Permissions)
	}
	// The workflow deploys exactly as a person does: make deploy, whose script pushes the images
	// and runs pulumi up with imageTag and the policy pack, and needs the Session Manager plugin.
	var deploys, installsPlugin bool
	for _, s := range d.Steps {
		deploys = deploys || strings.Contains(s.Run, "make deploy") && strings.Contains(s.Run, `IMAGE_TAG="$IMAGE_TAG"`)
		installsPlugin = installsPlugin || strings.Contains(s.Run, "session-manager-plugin")
	}
	script := read(t, filepath.Join("scripts", "deploy.sh"))
	if !deploys || !installsPlugin || !strings.Contains(script, "make push") || !strings.Contains(script, `imageTag="$IMAGE_TAG"`) ||
		!strings.Contains(script, "--policy-pack ./policies") || !strings.Contains(script, "workloads=false") {
		t.Errorf("deploy must run make deploy with the image tag (%v) after installing the Session Manager plugin (%v); "+
			"scripts/deploy.sh must push images, hold the workloads back on a first deploy and run pulumi up with imageTag and the policy pack", deploys, installsPlugin)
	}
	if !strings.Contains(text, "github.sha") {
		t.Error("images must be tagged with the commit SHA")
	}

	// AWS access through OIDC only: no long-lived keys in any workflow.
	for _, name := range []string{"checks.yml", "pull-request.yml", "deploy.yml"} {
		_, text := loadWorkflow(t, name)
		for _, banned := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id", "aws-secret-access-key"} {
			if strings.Contains(text, banned) {
				t.Errorf("%s mentions %s: use the OIDC role (role-to-assume)", name, banned)
			}
		}
		if strings.Contains(text, "configure-aws-credentials") && !strings.Contains(text, "role-to-assume") {
			t.Errorf("%s configures AWS credentials without a role to assume", name)
		}
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
