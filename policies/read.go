package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Formats Read understands.
const (
	FormatPlan    = "plan"    // shopmesh plan --json: [{urn, type, name, parent, provider, inputs}]
	FormatPreview = "preview" // pulumi preview --json: {steps: [{op, newState: {type, urn, inputs, …}}]}
	FormatExport  = "export"  // pulumi stack export: {deployment: {resources: [{urn, type, inputs, …}]}}
)

type state struct {
	URN                  string              `json:"urn"`
	Type                 string              `json:"type"`
	Name                 string              `json:"name"`
	Parent               string              `json:"parent"`
	Provider             string              `json:"provider"`
	Inputs               map[string]any      `json:"inputs"`
	Dependencies         []string            `json:"dependencies"`
	PropertyDependencies map[string][]string `json:"propertyDependencies"`
	Delete               bool                `json:"delete"`
}

func (s state) resource() Resource {
	name := s.Name
	if name == "" {
		if i := strings.LastIndex(s.URN, "::"); i >= 0 {
			name = s.URN[i+2:]
		}
	}
	return Resource{URN: s.URN, Type: s.Type, Name: name, Parent: s.Parent, Provider: s.Provider, Properties: s.Inputs,
		Dependencies: s.Dependencies, PropertyDependencies: s.PropertyDependencies}
}

// Read parses the resources of an offline plan, a `pulumi preview --json` or a
// `pulumi stack export`, and says which it was.
func Read(data []byte) ([]Resource, string, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, "", errors.New("no input: give the JSON of shopmesh plan --json, pulumi preview --json or pulumi stack export")
	}
	if data[0] == '[' {
		var plan []state
		if err := json.Unmarshal(data, &plan); err != nil {
			return nil, "", fmt.Errorf("offline plan: %w", err)
		}
		return collect(plan), FormatPlan, nil
	}
	var doc struct {
		Steps []struct {
			Op       string `json:"op"`
			NewState *state `json:"newState"`
		} `json:"steps"`
		Deployment *struct {
			Resources []state `json:"resources"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, "", fmt.Errorf("not JSON of a plan, preview or export: %w", err)
	}
	switch {
	case doc.Steps != nil:
		var states []state
		for _, st := range doc.Steps {
			if st.NewState == nil || st.Op == "delete" || st.Op == "discard" || st.Op == "delete-replaced" {
				continue // what the preview removes is not checked
			}
			states = append(states, *st.NewState)
		}
		return collect(states), FormatPreview, nil
	case doc.Deployment != nil:
		return collect(doc.Deployment.Resources), FormatExport, nil
	}
	return nil, "", errors.New("JSON object without steps (pulumi preview --json) or deployment (pulumi stack export)")
}

func collect(states []state) []Resource {
	var out []Resource
	for _, s := range states {
		if s.Type == "pulumi:pulumi:Stack" || s.Delete {
			continue
		}
		out = append(out, s.resource())
	}
	return out
}
