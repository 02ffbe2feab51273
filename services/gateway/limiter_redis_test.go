package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopmesh/shopmesh/services/internal/testenv"
	"github.com/shopmesh/shopmesh/services/internal/webtest"
)

// redisURL returns REDIS_URL (see testenv.Require for when the test is skipped).
func redisURL(t *testing.T) string {
	t.Helper()
	return testenv.Require(t, "REDIS_URL", "Redis")
}

func TestRedisLimiterBurstThenRate(t *testing.T) {
	l, err := NewRedisLimiter(redisURL(t), false, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := "test|" + uuid.NewString()
	allowed := 0
	for i := 0; i < 40; i++ {
		d, err := l.Allow(context.Background(), key, RateLimit{Rate: 1, Burst: 20})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		} else if d.RetryAfter <= 0 || d.RetryAfter > time.Second {
			t.Errorf("refusal with RetryAfter %v, want (0, 1s]", d.RetryAfter)
		}
	}
	if allowed != 20 {
		t.Errorf("allowed %d of 40 at once, want the burst of 20", allowed)
	}
	if g := gcraLimit(RateLimit{Rate: 0.5, Burst: 1}); g.Rate != 1 || g.Period != 2*time.Second {
		t.Errorf("gcraLimit(0.5/s) = %+v, want 1 per 2s", g)
	}
}

// TestRedisLimitIsSharedAcrossGateways: two gateway instances on one Redis keep one bucket per
// client. It does not depend on the machine keeping time: a burst that does not refill within
// the test, then a token a second, with waits longer than a second.
func TestRedisLimitIsSharedAcrossGateways(t *testing.T) {
	url := redisURL(t)
	up := echoUpstream(t, "api")
	routes := fmt.Sprintf("rate_limits:\n  burst: {rate: 0.001, burst: 5}\n  slow: {rate: 1, burst: 1}\nroutes:\n"+
		"  - {name: b, prefix: /b, rate_limit: burst, upstreams: [{url: %s}]}\n"+
		"  - {name: s, prefix: /s, rate_limit: slow, upstreams: [{url: %s}]}\n", up.URL, up.URL)
	env := map[string]string{"REDIS_URL": url, "API_KEY_HEADER": "X-Api-Key"}
	gateways := []string{startGateway(t, routes, env).url, startGateway(t, routes, env).url}

	// Ten requests taking turns between the gateways: one bucket of five lets five through, a
	// bucket per gateway would let all ten.
	client := uuid.NewString()
	var statuses []int
	for i := 0; i < 10; i++ {
		statuses = append(statuses, webtest.Do(t, "GET", gateways[i%2]+"/b", nil, "X-Api-Key", client).Status)
	}
	// A Redis call over its budget falls back to the gateway's own limiter (fail-open), whose
	// bucket is not shared: a failure says whether that happened.
	fallbacks := func() string {
		var out []string
		for i, gw := range gateways {
			n := "none counted"
			for _, line := range strings.Split(string(webtest.Do(t, "GET", gw+"/metrics", nil).Body), "\n") {
				if v, ok := strings.CutPrefix(line, "gateway_rate_limit_fallbacks_total "); ok {
					n = v
				}
			}
			out = append(out, fmt.Sprintf("gateway %d: %s", i, n))
		}
		return strings.Join(out, ", ")
	}
	if got := fmt.Sprint(statuses); got != "[200 200 200 200 200 429 429 429 429 429]" {
		t.Errorf("a burst of 5 over two gateways: %s, want five 200s then 429s (fallbacks to the local limiter: %s)", got, fallbacks())
	}

	// One token a second: taken at one gateway, it is missing at the other until it comes back.
	client = uuid.NewString()
	steps := []struct {
		gateway int
		wait    time.Duration
		want    int
	}{{0, 0, 200}, {1, 0, 429}, {1, 1100 * time.Millisecond, 200}, {0, 0, 429}, {0, 1100 * time.Millisecond, 200}}
	for i, s := range steps {
		time.Sleep(s.wait)
		if got := webtest.Do(t, "GET", gateways[s.gateway]+"/s", nil, "X-Api-Key", client).Status; got != s.want {
			t.Errorf("1/s, step %d (gateway %d after %v): %d, want %d (fallbacks to the local limiter: %s)", i, s.gateway, s.wait, got, s.want, fallbacks())
		}
	}
}

func TestRedisUnavailable(t *testing.T) {
	redisURL(t) // these run where the Redis tests run
	up := echoUpstream(t, "api")
	routes := fmt.Sprintf("rate_limits:\n  tight: {rate: 1, burst: 2}\nroutes:\n  - {name: t, prefix: /t, rate_limit: tight, upstreams: [{url: %s}]}\n", up.URL)
	down := "redis://127.0.0.1:1/0"

	open := startGateway(t, routes, map[string]string{"REDIS_URL": down})
	var statuses []int
	for i := 0; i < 3; i++ {
		statuses = append(statuses, webtest.Do(t, "GET", open.url+"/t", nil).Status)
	}
	if fmt.Sprint(statuses) != "[200 200 429]" {
		t.Errorf("fail-open statuses = %v, want the local limiter's [200 200 429]", statuses)
	}
	metrics := string(webtest.Do(t, "GET", open.url+"/metrics", nil).Body)
	if !strings.Contains(metrics, "gateway_rate_limit_fallbacks_total 3") {
		t.Errorf("fallback metric not counted:\n%s", grepLines(metrics, "fallbacks"))
	}

	closed := startGateway(t, routes, map[string]string{"REDIS_URL": down, "RATE_LIMIT_FAIL_OPEN": "false"})
	r := webtest.Do(t, "GET", closed.url+"/t", nil)
	if r.Status != 503 || !strings.Contains(r.Problem(t).Detail, "rate limiter") {
		t.Errorf("fail-closed = %d %s, want 503 naming the rate limiter", r.Status, r.Body)
	}
	if ready := webtest.Do(t, "GET", closed.url+"/readyz", nil); ready.Status != 503 {
		t.Errorf("fail-closed /readyz without Redis = %d, want 503", ready.Status)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestRedisCommandsAreTraced: with the go-redis OpenTelemetry hook on, the limiter's Redis call
// is a client span under the request's span.
func TestRedisCommandsAreTraced(t *testing.T) {
	l, err := NewRedisLimiter(redisURL(t), false, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	if err := l.instrument(tp); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := l.Allow(ctx, "traced|"+uuid.NewString(), RateLimit{Rate: 1, Burst: 1}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	found := false
	for _, s := range recorder.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.SpanKind() == trace.SpanKindClient {
			found = true
		}
	}
	if !found {
		t.Errorf("no Redis client span under the request's span among %d spans", len(recorder.Ended()))
	}
}

// TestLimiterRunsWithTheAccessStringTheStackGrants: the cluster's cache user gets exactly
// LimiterAccessString (stacks/platform/cache.go). Made here on the real Redis, that user must
// be able to take tokens (the script and the commands it calls: Redis checks those against
// the user too) and answer the readiness ping, and nothing more: other keys and other
// commands are refused.
func TestLimiterRunsWithTheAccessStringTheStackGrants(t *testing.T) {
	ctx := context.Background()
	userURL := aclUser(t, LimiterAccessString())
	l, err := NewRedisLimiter(userURL, false, NewLocalLimiter(time.Now), prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := fmt.Sprintf("acl|%d", time.Now().UnixNano())
	var allowed []bool
	for range 3 {
		d, err := l.Allow(ctx, key, RateLimit{Rate: 0.001, Burst: 2})
		if err != nil {
			t.Fatalf("a limit decided as the cluster's cache user: %v", err)
		}
		allowed = append(allowed, d.Allowed)
	}
	if !slices.Equal(allowed, []bool{true, true, false}) {
		t.Errorf("burst of 2 allowed %v, want true, true, false", allowed)
	}
	if err := l.Ping(ctx); err != nil {
		t.Errorf("the readiness ping as the cluster's cache user: %v", err)
	}
	client := redis.NewClient(mustParseRedisURL(t, userURL))
	defer client.Close()
	for _, cmd := range [][]any{{"GET", "session:1"}, {"KEYS", "*"}, {"FLUSHALL"}, {"CONFIG", "GET", "maxmemory"}, {"DEL", LimiterKeyPrefix + key}} {
		if err := client.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%v as the cache user: %v, want NOPERM", cmd, err)
		}
	}
}

// aclUser makes a Redis user (no password) with the access string rules for the test's
// length and returns its URL.
func aclUser(t *testing.T, rules string) string {
	t.Helper()
	url := redisURL(t)
	admin := redis.NewClient(mustParseRedisURL(t, url))
	defer admin.Close()
	user := fmt.Sprintf("limiter-acl-%d", time.Now().UnixNano())
	args := []any{"ACL", "SETUSER", user, "nopass"}
	for _, rule := range strings.Fields(rules) {
		args = append(args, rule)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s: %v", rules, err)
	}
	t.Cleanup(func() {
		admin := redis.NewClient(mustParseRedisURL(t, url))
		defer admin.Close()
		admin.Do(context.Background(), "ACL", "DELUSER", user)
	})
	opts := mustParseRedisURL(t, url)
	return fmt.Sprintf("redis://%s:unused@%s/%d", user, opts.Addr, opts.DB)
}

// TestReadinessShowsACacheThatRefusesTheLimiter: a fail-open gateway whose cache user may not
// run the limiter (the access string the stacks used to render) is not ready, so the broken
// user shows in the pods' status; one whose cache is down stays ready and limits locally.
func TestReadinessShowsACacheThatRefusesTheLimiter(t *testing.T) {
	routes := "routes:\n  - {name: a, prefix: /a, upstreams: [{url: http://127.0.0.1:1}]}\n"
	for _, tt := range []struct {
		name, url string
		status    int
	}{
		{"a user that may run the limiter", aclUser(t, LimiterAccessString()), 200},
		{"a user that may not", aclUser(t, "on ~rate:* -@all +@read +@write +@scripting +@connection -@dangerous"), 503},
		{"no cache at all", "redis://127.0.0.1:1/0", 200},
	} {
		for _, engine := range []string{"nethttp", "loop"} {
			f := startGateway(t, routes, map[string]string{"GATEWAY_ENGINE": engine, "REDIS_URL": tt.url})
			r := webtest.Do(t, "GET", f.url+"/readyz", nil)
			if r.Status != tt.status || (tt.status == 503 && !strings.Contains(string(r.Body), "rate-limit-cache")) {
				t.Errorf("%s, %s: /readyz %d %s, want %d", tt.name, engine, r.Status, r.Body, tt.status)
			}
		}
	}
}
