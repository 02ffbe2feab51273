package users

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// LoginPolicy slows down password guessing against one account. It counts failed logins per
// email address, whether or not an account has it, so that a lock says nothing about which
// addresses are registered.
type LoginPolicy struct {
	MaxFailures int           // failures within Window before the address locks
	Window      time.Duration // a failure older than this is forgotten
	Lock        time.Duration // the first lock; it doubles with every further failure, up to Window
}

// DefaultLoginPolicy: five tries, then 30 s, 1 min, 2 min… up to 15 min.
var DefaultLoginPolicy = LoginPolicy{MaxFailures: 5, Window: 15 * time.Minute, Lock: 30 * time.Second}

// lockFor is how long the address locks after its nth failure (0 below MaxFailures).
func (p LoginPolicy) lockFor(failures int) time.Duration {
	if failures < p.MaxFailures {
		return 0
	}
	d := float64(p.Lock) * math.Pow(2, float64(failures-p.MaxFailures))
	return time.Duration(min(d, float64(p.Window)))
}

// LoginState is what the store knows about an address's recent failures.
type LoginState struct {
	Failures    int
	LockedUntil time.Time
}

// loginKey identifies an address in the failure log without storing the address itself.
func loginKey(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

func lockedError(wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	return fault.Retry(fault.ErrTooMany,
		fmt.Sprintf("too many failed logins for this email; try again in %d seconds", secs), time.Duration(secs)*time.Second)
}

// Failure log of MemoryStore.

func (m *MemoryStore) LoginState(_ context.Context, key string, now time.Time, p LoginPolicy) (LoginState, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := m.failures[key]
	if st.last.Before(now.Add(-p.Window)) {
		return LoginState{}, nil
	}
	return LoginState{Failures: st.count, LockedUntil: st.lockedUntil}, nil
}

func (m *MemoryStore) RecordLoginFailure(_ context.Context, key string, now time.Time, p LoginPolicy) (LoginState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.failures[key]
	if st.last.Before(now.Add(-p.Window)) {
		st = memoryFailures{}
	}
	st.count++
	st.last = now
	if d := p.lockFor(st.count); d > 0 {
		st.lockedUntil = now.Add(d)
	}
	m.failures[key] = st
	if len(m.failures) > 100_000 { // an in-memory shop is for development: keep it bounded
		m.pruneLocked(now.Add(-p.Window), now)
	}
	return LoginState{Failures: st.count, LockedUntil: st.lockedUntil}, nil
}

func (m *MemoryStore) ClearLoginFailures(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failures, key)
	return nil
}

func (m *MemoryStore) PruneLoginFailures(_ context.Context, before, now time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pruneLocked(before, now), nil
}

func (m *MemoryStore) pruneLocked(before, now time.Time) int64 {
	var n int64
	for k, st := range m.failures {
		if st.last.Before(before) && !st.lockedUntil.After(now) {
			delete(m.failures, k)
			n++
		}
	}
	return n
}

type memoryFailures struct {
	count       int
	last        time.Time
	lockedUntil time.Time
}
