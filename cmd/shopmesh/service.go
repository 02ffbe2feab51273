package main

import (
	"context"
	"fmt"
	"io"

	"github.com/shopmesh/shopmesh/services/gateway"
	"github.com/shopmesh/shopmesh/services/orders"
	"github.com/shopmesh/shopmesh/services/products"
	"github.com/shopmesh/shopmesh/services/users"
)

// serviceCommand runs one service in this process, configured by its environment, as its own
// binary would: the fault scenario starts each service this way, so that it can kill one.
const serviceCommand = "_service"

func runService(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	runs := map[string]func(context.Context, []string, func(string) string, io.Writer) error{
		"users": users.Run, "products": products.Run, "orders": orders.Run, "gateway": gateway.Run,
	}
	if len(args) != 1 || runs[args[0]] == nil {
		return fmt.Errorf("usage: shopmesh %s users|products|orders|gateway", serviceCommand)
	}
	return runs[args[0]](ctx, []string{args[0]}, getenv, stdout)
}
