//go:build linux

package gateway

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// startLoop runs the event-loop engine, as Run does, on loopback until the test ends.
func startLoop(t *testing.T, env map[string]string) string {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, g, release, err := newServer(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := newLoopEngine(ctx, g, srv, cfg, logger)
	if err == nil {
		err = e.listen("127.0.0.1:0", 2)
	}
	if err != nil {
		cancel()
		release()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.serve(ctx, 0, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loop engine: %v", err)
		}
		release()
	})
	return "http://" + e.addr.String()
}
