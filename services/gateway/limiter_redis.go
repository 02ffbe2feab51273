package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// RedisLimiter shares one limit across every gateway replica: GCRA in Redis (redis_rate), one
// round trip per request. When Redis cannot answer, it either falls back to a local limiter
// (fail-open, the default: each replica then limits on its own) or refuses (fail-closed).
type RedisLimiter struct {
	rate      *redis_rate.Limiter
	client    *redis.Client
	fallback  Limiter
	failOpen  bool
	fallbacks prometheus.Counter
	logger    *slog.Logger
	warned    atomic.Int64 // unix second of the last warning, to log an outage once a minute
	downUntil atomic.Int64 // unix nanoseconds: after a failure, skip Redis for a second
}

// LimiterKeyPrefix begins every key the shared limiter writes (redis_rate's prefix).
const LimiterKeyPrefix = "rate:"

// LimiterAccessString is the ACL rule, in the syntax of ACL SETUSER that ElastiCache user
// access strings use, that lets the shared limiter do what it does and nothing else: its GCRA
// script (EVALSHA, and EVAL while the script is not cached), and the commands the script
// calls, which Valkey and Redis check against the user too (TIME, GET, SET), on its own keys
// only; PING for readiness; HELLO and AUTH as go-redis connects (it sends no CLIENT SETINFO:
// DisableIdentity). Categories would not do: TIME is only in @fast, and @fast holds far more.
func LimiterAccessString() string {
	return "on ~" + LimiterKeyPrefix + "* -@all +evalsha +eval +time +get +set +ping +hello +auth"
}

// redisBudget bounds one limiter call, so that a struggling Redis cannot stall requests.
const redisBudget = 150 * time.Millisecond

// NewRedisLimiter connects to url (redis://host:port/db). Timeouts are short: an unreachable
// Redis must not hold requests up.
func NewRedisLimiter(url string, failOpen bool, fallback Limiter, reg prometheus.Registerer, logger *slog.Logger) (*RedisLimiter, error) {
	return newRedisLimiter(url, nil, failOpen, fallback, reg, logger)
}

// newRedisLimiter is NewRedisLimiter with IAM authentication when iam is not nil.
func newRedisLimiter(url string, iam *iamAuth, failOpen bool, fallback Limiter, reg prometheus.Registerer, logger *slog.Logger) (*RedisLimiter, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if iam != nil {
		opts.CredentialsProviderContext = iam.credentials
		opts.ConnMaxLifetime = iamConnLifetime
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 250*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	if iam != nil { // a dial then also signs a token and completes a TLS handshake
		opts.DialTimeout = time.Second
	}
	opts.MaxRetries = 0
	opts.DisableIdentity = true                                          // no CLIENT SETINFO: the cache user's access string does not grant it
	opts.DialerRetries, opts.DialerRetryTimeout = 1, 10*time.Millisecond // go-redis would retry 5× 100 ms
	opts.PoolSize = 64
	client := redis.NewClient(opts)
	l := &RedisLimiter{
		rate: redis_rate.NewLimiter(client), client: client, fallback: fallback, failOpen: failOpen, logger: logger,
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_rate_limit_fallbacks_total",
			Help: "Rate-limit decisions made without Redis because it did not answer.",
		}),
	}
	reg.MustRegister(l.fallbacks)
	return l, nil
}

// instrument adds a client span to every Redis command (go-redis's OpenTelemetry hook).
func (l *RedisLimiter) instrument(tp trace.TracerProvider) error {
	return redisotel.InstrumentTracing(l.client, redisotel.WithTracerProvider(tp))
}

// Ping checks that Redis answers, for readiness.
func (l *RedisLimiter) Ping(ctx context.Context) error { return l.client.Ping(ctx).Err() }

// CanDecide is the readiness check of a fail-open limiter: it takes a token from a probe key
// of its own, and fails only when Redis answers with an error (a user whose access string does
// not let it run the limiter, a script Redis refuses): every replica would then limit on its
// own, silently. A Redis that does not answer at all is an outage, which fail-open rides out
// on the local limiter: the replica stays ready, or an outage would take the gateway down.
func (l *RedisLimiter) CanDecide(ctx context.Context) error {
	_, err := l.rate.Allow(ctx, "readiness-probe", redis_rate.PerSecond(1000))
	var reply redis.Error
	if errors.As(err, &reply) {
		return fmt.Errorf("the cache refuses the limiter (%w): check the cache user's access string", err)
	}
	return nil
}

// Close releases the connections.
func (l *RedisLimiter) Close() error { return l.client.Close() }

// Allow asks Redis; see RedisLimiter for what happens when it cannot.
func (l *RedisLimiter) Allow(ctx context.Context, key string, p RateLimit) (Decision, error) {
	if time.Now().UnixNano() < l.downUntil.Load() {
		return l.withoutRedis(ctx, key, p, errRedisDown)
	}
	rctx, cancel := context.WithTimeout(ctx, redisBudget)
	res, err := l.rate.Allow(rctx, key, gcraLimit(p))
	cancel()
	if err == nil {
		d := Decision{Allowed: res.Allowed > 0, Remaining: res.Remaining, Reset: res.ResetAfter}
		if !d.Allowed {
			d.RetryAfter = res.RetryAfter
		}
		return d, nil
	}
	if ctx.Err() != nil {
		return Decision{}, ctx.Err()
	}
	l.downUntil.Store(time.Now().Add(time.Second).UnixNano())
	return l.withoutRedis(ctx, key, p, err)
}

var errRedisDown = errors.New("shared limiter: Redis failed within the last second")

func (l *RedisLimiter) withoutRedis(ctx context.Context, key string, p RateLimit, err error) (Decision, error) {
	l.fallbacks.Inc()
	if now := time.Now().Unix(); now-l.warned.Load() >= 60 {
		l.warned.Store(now)
		l.logger.WarnContext(ctx, "rate limiter: Redis did not answer", "error", err, "fail_open", l.failOpen)
	}
	if !l.failOpen {
		return Decision{}, fmt.Errorf("shared rate limiter unavailable: %w", err)
	}
	return l.fallback.Allow(ctx, key, p)
}

// gcraLimit expresses Rate per second as redis_rate's integer events per period: one event per
// emission interval gives the same schedule for any rate, fractional ones included.
func gcraLimit(p RateLimit) redis_rate.Limit {
	if p.Rate == math.Trunc(p.Rate) {
		return redis_rate.Limit{Rate: int(p.Rate), Burst: p.Burst, Period: time.Second}
	}
	return redis_rate.Limit{Rate: 1, Burst: p.Burst, Period: time.Duration(float64(time.Second) / p.Rate)}
}
