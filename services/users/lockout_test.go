package users

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

type fixedIssuer struct{}

func (fixedIssuer) Sign(subject string, roles []string) (string, error) { return "a.b.c", nil }
func (fixedIssuer) TTL() time.Duration                                  { return time.Minute }

func TestLoginLockIsTheSameForKnownAndUnknownAddresses(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			policy := LoginPolicy{MaxFailures: 3, Window: 10 * time.Minute, Lock: 30 * time.Second}
			svc, err := NewService(open(t), fixedIssuer{}, Limits{PasswordChecks: 2, PasswordWait: time.Second, Login: policy})
			if err != nil {
				t.Fatal(err)
			}
			clock := time.Now().UTC().Truncate(time.Microsecond)
			svc.now = func() time.Time { return clock }
			if _, err := svc.Register(ctx, Registration{Email: "ada@example.com", Password: "password1", Name: "Ada"}); err != nil {
				t.Fatal(err)
			}

			// Each step: the answer for the registered address and the unknown one must agree.
			type answer struct {
				kind       string
				retryAfter time.Duration
			}
			try := func(email, password string) answer {
				_, err := svc.Login(ctx, email, password)
				var fe *fault.Error
				switch {
				case err == nil:
					return answer{kind: "ok"}
				case errors.Is(err, ErrBadCredentials):
					return answer{kind: "bad credentials"}
				case errors.As(err, &fe) && errors.Is(err, fault.ErrTooMany):
					return answer{kind: "locked", retryAfter: fe.RetryAfter}
				}
				t.Fatalf("login %s: %v", email, err)
				return answer{}
			}
			steps := []struct {
				advance time.Duration
				want    answer
			}{
				{0, answer{kind: "bad credentials"}},
				{time.Second, answer{kind: "bad credentials"}},
				{time.Second, answer{kind: "bad credentials"}},                      // the third failure locks for 30 s
				{time.Second, answer{kind: "locked", retryAfter: 29 * time.Second}}, // even the right password
				{29 * time.Second, answer{kind: "bad credentials"}},                 // unlocked; fourth failure: 60 s
				{0, answer{kind: "locked", retryAfter: 60 * time.Second}},
				{60 * time.Second, answer{kind: "ok"}},
			}
			for i, st := range steps {
				clock = clock.Add(st.advance)
				pw := "wrong-password"
				if i == 3 || st.want.kind == "ok" {
					pw = "password1"
				}
				known := try("Ada@Example.com", pw)
				unknown := try("nobody@example.com", pw)
				if st.want.kind == "ok" {
					unknown.kind = "ok" // the unknown address has no right password; it is checked below
				}
				if known != st.want || unknown != st.want {
					t.Fatalf("step %d: registered address %+v, unknown address %+v; want both %+v", i, known, unknown, st.want)
				}
			}
			// A successful login forgets the failures: the next wrong password does not lock.
			if got := try("ada@example.com", "wrong-password"); got.kind != "bad credentials" {
				t.Errorf("after a successful login, a wrong password = %+v, want bad credentials", got)
			}
			if got := try("nobody@example.com", "wrong-password"); got.kind != "locked" {
				t.Errorf("the unknown address, never logged in, = %+v; want still locked", got)
			}
			// Failures older than the window are forgotten and pruned.
			clock = clock.Add(policy.Window + time.Hour)
			if n, err := svc.PruneLoginFailures(ctx); err != nil || n != 2 {
				t.Errorf("PruneLoginFailures = %d, %v; want both addresses' rows", n, err)
			}
		})
	}
}

func TestConcurrentFailuresAreAllCounted(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s, ctx := open(t), context.Background()
			policy := LoginPolicy{MaxFailures: 50, Window: time.Minute, Lock: time.Second}
			now := time.Now()
			var wg sync.WaitGroup
			for range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.RecordLoginFailure(ctx, loginKey("x@example.com"), now, policy); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if st, err := s.LoginState(ctx, loginKey("x@example.com"), now, policy); err != nil || st.Failures != 40 {
				t.Errorf("40 concurrent failures recorded as %+v, %v", st, err)
			}
		})
	}
}

func TestPasswordGateBoundsConcurrency(t *testing.T) {
	g := newPasswordGate(2, 50*time.Millisecond)
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.run(context.Background(), func() {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(40 * time.Millisecond)
				running.Add(-1)
			})
		}()
	}
	wg.Wait()
	busy := 0
	for _, err := range errs {
		if errors.Is(err, ErrBusy) {
			busy++
		} else if err != nil {
			t.Errorf("run: %v", err)
		}
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d, want 2", peak.Load())
	}
	// 2 slots, 40 ms each, 50 ms of waiting: 4 run and the other 4 give up.
	if busy == 0 || busy == len(errs) {
		t.Errorf("%d of %d were refused; want some waiting and some refused", busy, len(errs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.slots <- struct{}{}
	g.slots <- struct{}{}
	if err := g.run(ctx, func() {}); !errors.Is(err, context.Canceled) && !errors.Is(err, ErrBusy) {
		t.Errorf("run with a cancelled context and no free slot = %v", err)
	}
}

func TestLoginFloodAnswers503WithRetryAfter(t *testing.T) {
	base := startServer(t, map[string]string{"PASSWORD_CHECKS": "1", "PASSWORD_CHECK_WAIT": "20ms", "LOGIN_MAX_FAILURES": "1000"})
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := webtest.Do(t, "POST", base+"/users/login", fmt.Sprintf(`{"email":"u%d@example.com","password":"wrong-password"}`, i))
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
			if r.Status == http.StatusServiceUnavailable {
				if r.Header.Get("Retry-After") != "1" {
					t.Errorf("503 with Retry-After %q, want 1", r.Header.Get("Retry-After"))
				}
				r.Problem(t)
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusServiceUnavailable] == 0 || statuses[http.StatusUnauthorized] == 0 || len(statuses) != 2 {
		t.Errorf("20 concurrent logins with one password slot: %v; want some 401 and some 503, nothing else", statuses)
	}
}

func TestLockedLoginAnswers429(t *testing.T) {
	base := startServer(t, map[string]string{"LOGIN_MAX_FAILURES": "2", "LOGIN_LOCK": "45s"})
	register(t, base, "ada@example.com", "password1")
	for _, email := range []string{"ada@example.com", "nobody@example.com"} {
		for range 2 {
			if r := webtest.Do(t, "POST", base+"/users/login", map[string]string{"email": email, "password": "wrong-password"}); r.Status != 401 {
				t.Fatalf("wrong password for %s = %d", email, r.Status)
			}
		}
		r := webtest.Do(t, "POST", base+"/users/login", map[string]string{"email": email, "password": "password1"})
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "45" {
			t.Fatalf("login while locked (%s) = %d, Retry-After %q; want 429 and 45", email, r.Status, r.Header.Get("Retry-After"))
		}
		if p := r.Problem(t); p.Detail != "too many failed logins for this email; try again in 45 seconds" {
			t.Errorf("429 detail = %q", p.Detail)
		}
	}
}
