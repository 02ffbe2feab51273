// Package api holds the OpenAPI 3.1 documents of shopmesh's HTTP APIs: one per service
// (users.yaml, products.yaml, orders.yaml), the components and operational endpoints they
// share (common.yaml), and the public API as the gateway serves it (gateway.yaml, completed
// from the services' documents and the gateway's route table). Services serve their document
// at GET /openapi.json; the contract tests validate every request and response against them.
package api

import (
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed *.yaml
var files embed.FS

// Services are the services with a document of their own.
var Services = []string{"users", "products", "orders"}

type object = map[string]any

// Document is service's complete OpenAPI document as JSON: its own file with common.yaml's
// components and operational paths merged in.
func Document(service string) ([]byte, error) {
	doc, err := document(service)
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

func document(service string) (object, error) {
	if !slices.Contains(Services, service) {
		return nil, fmt.Errorf("no API document for %q; one of %s", service, strings.Join(Services, ", "))
	}
	doc, _, err := withCommon(service + ".yaml")
	return doc, err
}

// withCommon loads a document with common.yaml merged in; common is returned too.
func withCommon(name string) (doc, common object, err error) {
	if doc, err = load(name); err != nil {
		return nil, nil, err
	}
	if common, err = load("common.yaml"); err != nil {
		return nil, nil, err
	}
	if err := merge(doc, common, false); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return doc, common, nil
}

// Route is what the gateway's route table says of one operation: whether a route sends it
// upstream, and whether that route checks tokens and limits rates.
type Route struct {
	Routed, Auth, Limited bool
}

// Public is the public API as the gateway serves it, as JSON: every operation of the
// services' documents that route routes (path templates are matched with their parameters
// filled in), with the gateway's own answers added, and the gateway's operational paths.
func Public(route func(method, path string) Route) ([]byte, error) {
	doc, common, err := withCommon("gateway.yaml")
	if err != nil {
		return nil, err
	}
	paths := doc["paths"].(object)
	components := doc["components"].(object)
	for _, service := range Services {
		sdoc, err := document(service)
		if err != nil {
			return nil, err
		}
		for path, item := range sdoc["paths"].(object) {
			if _, own := common["paths"].(object)[path]; own {
				continue // the gateway answers /healthz and the like itself
			}
			kept := object{}
			for method, op := range item.(object) {
				op, isOp := op.(object)
				if !isOp { // path-level parameters
					kept[method] = item.(object)[method]
					continue
				}
				r := route(strings.ToUpper(method), fillTemplate(path))
				if !r.Routed || op["x-internal"] == true {
					continue
				}
				op = maps.Clone(op)
				if _, ok := op["security"]; !ok && sdoc["security"] != nil {
					op["security"] = sdoc["security"] // a document-wide requirement stays with its operations
				}
				responses := maps.Clone(op["responses"].(object))
				add := map[string]string{"502": "BadGateway", "504": "GatewayTimeout"}
				if r.Auth {
					add["401"] = "Unauthorized"
				}
				if r.Limited {
					add["429"], add["503"] = "GatewayTooManyRequests", "Unavailable"
				}
				for status, name := range add {
					if _, ok := responses[status]; !ok {
						responses[status] = object{"$ref": "#/components/responses/" + name}
					}
				}
				op["responses"] = responses
				kept[method] = op
			}
			if hasOperation(kept) {
				paths[path] = kept
			}
		}
		if err := mergeSection(components, sdoc["components"].(object), true); err != nil {
			return nil, fmt.Errorf("%s.yaml: %w", service, err)
		}
	}
	return json.Marshal(doc)
}

func hasOperation(item object) bool {
	for _, v := range item {
		if _, ok := v.(object); ok {
			return true
		}
	}
	return false
}

// fillTemplate turns /orders/{id} into /orders/x, a path the route table can match.
func fillTemplate(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		j := strings.IndexByte(path, '}')
		if i < 0 || j < i {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		b.WriteString("x")
		path = path[j+1:]
	}
}

func load(name string) (object, error) {
	data, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var doc object
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return doc, nil
}

// merge adds from's paths and components to doc. A name defined in both is an error, unless
// same allows identical definitions.
func merge(doc, from object, same bool) error {
	for _, section := range []string{"paths", "components"} {
		if from[section] == nil {
			continue
		}
		if doc[section] == nil {
			doc[section] = object{}
		}
		if section == "paths" {
			if err := mergeNames(doc[section].(object), from[section].(object), "paths", same); err != nil {
				return err
			}
			continue
		}
		if err := mergeSection(doc[section].(object), from[section].(object), same); err != nil {
			return err
		}
	}
	return nil
}

// mergeSection merges components: schemas, responses and the rest, each by name.
func mergeSection(into, from object, same bool) error {
	for kind, defs := range from {
		if into[kind] == nil {
			into[kind] = object{}
		}
		if err := mergeNames(into[kind].(object), defs.(object), "components."+kind, same); err != nil {
			return err
		}
	}
	return nil
}

func mergeNames(into, from object, where string, same bool) error {
	for name, def := range from {
		if prior, ok := into[name]; ok {
			if same && reflect.DeepEqual(prior, def) {
				continue
			}
			return fmt.Errorf("%s.%s is defined twice", where, name)
		}
		into[name] = def
	}
	return nil
}
