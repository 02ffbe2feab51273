package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
)

// StackConfig returns the configuration the Pulumi CLI would hand the program for stack, read
// with the SDK's own loaders so that a file `pulumi preview` refuses is refused here too:
//
//   - workspace.LoadProject validates Pulumi.yaml against the project schema
//     (sdk/go/common/workspace/project.json) and checks every default against its declared type;
//   - workspace.LoadProjectStack reads Pulumi.<stack>.yaml;
//   - the merge follows the CLI's (pulumi/pulumi pkg/workspace/config.go, mergeConfig and
//     validateStackConfigValue): a key the stack does not set takes the project default, a key
//     with neither is missing, and every value is checked with workspace.ValidateConfigValue.
//
// One check is stricter than the CLI: a key in the project's namespace that Pulumi.yaml does not
// declare is refused, because the program would silently ignore a misspelt key.
//
// overrides are `--config key=value` pairs, set as plain strings as `pulumi preview --config`
// does (a JSON array or object is stored as the object value `pulumi config set --path` would
// make), and validated like the file's values. The result maps "namespace:key" to the string the
// program receives (arrays and objects as JSON).
func StackConfig(dir, stack string, overrides map[string]string) (project string, cfg map[string]string, err error) {
	proj, err := workspace.LoadProject(filepath.Join(dir, "Pulumi.yaml"))
	if err != nil {
		return "", nil, err
	}
	project = proj.Name.String()
	stackFile := filepath.Join(dir, "Pulumi."+stack+".yaml")
	if _, err := os.Stat(stackFile); err != nil {
		return "", nil, fmt.Errorf("no stack %q: %w", stack, err)
	}
	ps, err := workspace.LoadProjectStack(diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never}), proj, stackFile)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", stackFile, err)
	}
	values := ps.Config
	for _, k := range sortedKeys(overrides) {
		key, err := config.ParseKey(qualify(project, k))
		if err != nil {
			return "", nil, fmt.Errorf("--config %s: %w", k, err)
		}
		v := config.NewValue(overrides[k])
		if t := strings.TrimSpace(overrides[k]); strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
			v = config.NewObjectValue(t) // as `pulumi config set --path` stores arrays and objects
		}
		if err := values.Set(key, v, false); err != nil {
			return "", nil, fmt.Errorf("--config %s: %w", k, err)
		}
	}
	if err := mergeProjectConfig(stack, proj, values); err != nil {
		return "", nil, err
	}
	plain, err := values.Decrypt(config.NopDecrypter)
	if err != nil {
		return "", nil, err
	}
	cfg = make(map[string]string, len(plain))
	for k, v := range plain {
		cfg[k.String()] = v
	}
	return project, cfg, nil
}

// mergeProjectConfig applies the project's defaults to values and validates every value against
// its declared type, as the CLI does before it runs the program.
func mergeProjectConfig(stack string, proj *workspace.Project, values config.Map) error {
	project := proj.Name.String()
	var missing, undeclared, mistyped []string
	for key := range values {
		if key.Namespace() == project {
			if _, ok := proj.Config[key.Name()]; !ok {
				undeclared = append(undeclared, key.Name())
			}
		}
	}
	for _, name := range sortedKeys(proj.Config) {
		decl := proj.Config[name]
		key, err := config.ParseKey(qualify(project, name))
		if err != nil {
			return err
		}
		v, found, err := values.Get(key, true)
		if err != nil {
			return fmt.Errorf("config %s: %w", name, err)
		}
		if !found {
			if decl.Default == nil && decl.Value == nil {
				if key.Namespace() == project {
					missing = append(missing, name)
				}
				continue
			}
			def := decl.Default
			if def == nil {
				def = decl.Value
			}
			dv, err := configValueOf(def)
			if err != nil {
				return fmt.Errorf("default of %s: %w", name, err)
			}
			if err := values.Set(key, dv, true); err != nil {
				return err
			}
			continue
		}
		if !decl.IsExplicitlyTyped() {
			continue
		}
		raw, err := v.Value(config.NopDecrypter)
		if err != nil {
			return err
		}
		var content any = raw
		if v.Object() {
			if err := json.Unmarshal([]byte(raw), &content); err != nil {
				return fmt.Errorf("config %s: %w", name, err)
			}
		}
		if !workspace.ValidateConfigValue(decl.TypeName(), decl.Items, content) {
			mistyped = append(mistyped, fmt.Sprintf("'%s' must be of type '%s'", name, workspace.InferFullTypeName(decl.TypeName(), decl.Items)))
		}
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("stack '%s' is missing configuration values %s (set them with pulumi config set)", stack, strings.Join(missing, ", ")))
	}
	if len(undeclared) > 0 {
		sort.Strings(undeclared)
		errs = append(errs, fmt.Errorf("stack '%s' sets %s, which Pulumi.yaml does not declare (a misspelt key would be ignored)", stack, strings.Join(undeclared, ", ")))
	}
	if len(mistyped) > 0 {
		errs = append(errs, fmt.Errorf("stack '%s' configuration: %s", stack, strings.Join(mistyped, "; ")))
	}
	return errors.Join(errs...)
}

// configValueOf renders a default as the CLI does (createConfigValue): primitives as text,
// arrays and objects as JSON object values.
func configValueOf(v any) (config.Value, error) {
	switch v.(type) {
	case string, int, bool:
		return config.NewValue(fmt.Sprintf("%v", v)), nil
	}
	simple, err := workspace.SimplifyMarshalledValue(v)
	if err != nil {
		return config.Value{}, err
	}
	b, err := json.Marshal(simple)
	if err != nil {
		return config.Value{}, err
	}
	return config.NewObjectValue(string(b)), nil
}

// qualify gives a key its namespace; unqualified keys belong to the project.
func qualify(project, key string) string {
	if strings.Contains(key, ":") {
		return key
	}
	return project + ":" + key
}
