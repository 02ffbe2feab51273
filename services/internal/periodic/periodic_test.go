package periodic

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestStartRunsUntilStopped(t *testing.T) {
	var runs atomic.Int32
	var log syncBuffer
	stop := Start(5*time.Millisecond, slog.New(slog.NewTextHandler(&log, nil)), "prune things", func(ctx context.Context) (int64, error) {
		if runs.Add(1) == 2 {
			return 0, errors.New("database away")
		}
		return 1, nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for runs.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	after := runs.Load()
	time.Sleep(20 * time.Millisecond)
	if after < 3 || runs.Load() != after {
		t.Errorf("ran %d times, then %d after stop; want at least 3, then none", after, runs.Load())
	}
	if !strings.Contains(log.String(), "prune things") || !strings.Contains(log.String(), "database away") {
		t.Errorf("the failure was not logged: %q", log.String())
	}
}
