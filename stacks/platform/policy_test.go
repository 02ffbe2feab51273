package platform

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/shopmesh/shopmesh/policies"
)

// knownAdvisories are the advisory findings the stacks are expected to have, each with its
// reason in the README ("Policy pack").
var knownAdvisories = []string{
	"SHOP-ISTIO-004 PeerAuthentication-gateway-ingress", // the NLB reaches the gateway's port 8080 from outside the mesh
}

// TestStacksPassThePolicyPack runs the policy pack on what the program declares for dev and
// prod, as `shopmesh policy check` does: no mandatory violation, only the known advisories.
func TestStacksPassThePolicyPack(t *testing.T) {
	pack, err := policies.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, stack := range []string{"dev", "prod"} {
		t.Run(stack, func(t *testing.T) {
			data, err := json.Marshal(planFor(t, stack).Resources)
			if err != nil {
				t.Fatal(err)
			}
			resources, format, err := policies.Read(data)
			if err != nil || format != policies.FormatPlan {
				t.Fatalf("read the plan: %v (%s)", err, format)
			}
			violations, err := pack.Check(context.Background(), resources)
			if err != nil {
				t.Fatal(err)
			}
			var advisories []string
			for _, v := range violations {
				if v.Rule.Level == policies.Mandatory {
					t.Errorf("%s %s: %s", v.Rule.ID, v.Resource, v.Message)
					continue
				}
				advisories = append(advisories, v.Rule.ID+" "+v.Resource[strings.LastIndex(v.Resource, "::")+2:])
			}
			sort.Strings(advisories)
			if strings.Join(advisories, "\n") != strings.Join(knownAdvisories, "\n") {
				t.Errorf("advisories:\n%s\nwant:\n%s", strings.Join(advisories, "\n"), strings.Join(knownAdvisories, "\n"))
			}
		})
	}
}
