// Command localshop starts the whole shop on this machine, like `shopmesh run`, without
// linking the Pulumi program, so that `make run` builds in seconds on a fresh checkout.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/shopmesh/shopmesh/services/localshop"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := localshop.Run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "localshop:", err)
		os.Exit(1)
	}
}
