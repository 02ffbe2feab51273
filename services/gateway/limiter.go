package gateway

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Decision is a rate limiter's answer for one request.
type Decision struct {
	Allowed    bool
	Remaining  int           // whole tokens left after this request
	RetryAfter time.Duration // when refused: until one token is back
	Reset      time.Duration // until the bucket is full again
}

// Limiter decides whether the client key may make one more request under policy.
type Limiter interface {
	Allow(ctx context.Context, key string, policy RateLimit) (Decision, error)
}

// LocalLimiter keeps token buckets in this process: the default, and the fallback when a
// shared limiter cannot be reached.
type LocalLimiter struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [64]limiterShard
}

type limiterShard struct {
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
	policy RateLimit
}

// NewLocalLimiter returns an empty limiter reading time from now (time.Now in production).
func NewLocalLimiter(now func() time.Time) *LocalLimiter {
	l := &LocalLimiter{now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// Allow takes a token from key's bucket if it has one. Buckets start full (Burst tokens) and
// refill at Rate per second.
func (l *LocalLimiter) Allow(_ context.Context, key string, p RateLimit) (Decision, error) {
	now := l.now()
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now) // before the lookup: a sweep must never drop the bucket in use
	b := s.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(p.Burst), last: now, policy: p}
		s.buckets[key] = b
	} else {
		b.tokens = math.Min(float64(p.Burst), b.tokens+now.Sub(b.last).Seconds()*p.Rate)
		b.last, b.policy = now, p
	}
	var d Decision
	if b.tokens >= 1 {
		b.tokens--
		d.Allowed = true
	} else {
		d.RetryAfter = seconds((1 - b.tokens) / p.Rate)
	}
	d.Remaining = int(b.tokens)
	d.Reset = seconds((float64(p.Burst) - b.tokens) / p.Rate)
	return d, nil
}

// sweep drops buckets that have refilled completely, at most once a minute per shard, so
// that memory follows the number of recently active clients.
func (s *limiterShard) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	for key, b := range s.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*b.policy.Rate >= float64(b.policy.Burst) {
			delete(s.buckets, key)
		}
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
