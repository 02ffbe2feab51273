// Command account is the shopmesh-account Pulumi program (account/Pulumi.yaml): what exists
// once per AWS account.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/shopmesh/shopmesh/stacks/platform"
)

func main() { pulumi.Run(platform.RunAccount) }
