// Command stacks is the shopmesh Pulumi program; `pulumi up` runs it (Pulumi.yaml: main: stacks/).
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/shopmesh/shopmesh/stacks/platform"
)

func main() { pulumi.Run(platform.Run) }
