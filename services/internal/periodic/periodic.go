// Package periodic runs a service's housekeeping (pruning old rows, reconciling) on a timer
// until the service stops.
package periodic

import (
	"context"
	"log/slog"
	"time"
)

// Start calls job at once and then every interval until the returned func is called, which waits for a running
// job to see its context cancelled and return. job reports how many things it did: a count of
// zero is not logged, an error is logged as a warning, what is done at debug level.
func Start(interval time.Duration, logger *slog.Logger, what string, job func(context.Context) (int64, error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for first := true; ; first = false {
			if !first {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			n, err := job(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				logger.Warn(what, "error", err)
			case n > 0:
				logger.Debug(what, "count", n)
			}
		}
	}()
	return func() { cancel(); <-done }
}
