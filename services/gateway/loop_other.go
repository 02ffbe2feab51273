//go:build !linux

package gateway

import (
	"context"
	"errors"
	"log/slog"
)

// runLoop: the event-loop engine is built on Linux's epoll.
func runLoop(context.Context, Config, *slog.Logger) error {
	return errors.New("GATEWAY_ENGINE=loop needs Linux (epoll); use nethttp here")
}
