package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func testIAMAuth(user string, now time.Time) *iamAuth {
	creds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "session-token"}, nil
	})
	return &iamAuth{user: user, cache: "shopmesh-dev-ratelimit", region: "eu-west-1", creds: creds, signer: v4.NewSigner(),
		now: func() time.Time { return now }}
}

// TestIAMTokenIsAPresignedConnectRequest checks the token's form against the ElastiCache guide
// ("Authenticating with IAM"): a presigned GET of the cache name with Action=connect and the
// user, for the elasticache service, valid 900 s, without the scheme.
func TestIAMTokenIsAPresignedConnectRequest(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	a := testIAMAuth("shopmesh-dev-gateway", now)
	user, token, err := a.credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if user != "shopmesh-dev-gateway" || strings.HasPrefix(token, "http") {
		t.Fatalf("credentials = %q, %q; want the user ID and a token without a scheme", user, token)
	}
	u, err := url.Parse("http://" + token)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	want := map[string]string{
		"Action": "connect", "User": "shopmesh-dev-gateway", "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
		"X-Amz-Credential": "AKIDEXAMPLE/20261122/eu-west-1/elasticache/aws4_request", "X-Amz-Date": "20261122T100000Z",
		"X-Amz-Expires": "900", "X-Amz-SignedHeaders": "host", "X-Amz-Security-Token": "session-token",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("token %s = %q, want %q", k, q.Get(k), v)
		}
	}
	if u.Host != "shopmesh-dev-ratelimit" || u.Path != "/" {
		t.Errorf("token host and path %q %q, want the cache name and /", u.Host, u.Path)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(q.Get("X-Amz-Signature")) {
		t.Errorf("signature %q", q.Get("X-Amz-Signature"))
	}
	_, again, _ := a.credentials(context.Background())
	_, later, _ := testIAMAuth("shopmesh-dev-gateway", now.Add(time.Second)).credentials(context.Background())
	if again != token || later == token {
		t.Error("the token must depend on the signing time and on nothing random")
	}
}

// TestRedisLimiterAuthenticatesWithTheIAMToken: a Redis user whose password is the token the
// gateway signs (a fixed clock makes it predictable) lets the limiter in; another time's token
// does not. It runs against the real Redis of REDIS_URL, whose ACL it changes for the test.
func TestRedisLimiterAuthenticatesWithTheIAMToken(t *testing.T) {
	base := redisURL(t)
	admin := redis.NewClient(mustParseRedisURL(t, base))
	defer admin.Close()
	ctx := context.Background()
	user := "gw-" + uuid.NewString()[:8]
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	auth := testIAMAuth(user, now)
	token, err := auth.token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// ElastiCache checks the signature; here the token is simply the user's password.
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+token, "~*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })

	u, _ := url.Parse(base)
	u.User = url.User(user)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := newRedisLimiter(u.String(), auth, false, nil, prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if d, err := l.Allow(ctx, "iam|"+uuid.NewString(), RateLimit{Rate: 1, Burst: 1}); err != nil || !d.Allowed {
		t.Fatalf("Allow with the IAM token = %+v, %v", d, err)
	}

	stale := testIAMAuth(user, now.Add(time.Hour))
	l2, err := newRedisLimiter(u.String(), stale, false, nil, prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if _, err := l2.Allow(ctx, "iam|"+uuid.NewString(), RateLimit{Rate: 1, Burst: 1}); err == nil {
		t.Error("a token signed at another time was accepted")
	}
}

func mustParseRedisURL(t *testing.T, raw string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestRedisIAMConfig(t *testing.T) {
	load := func(env map[string]string) error {
		_, err := LoadConfig(func(k string) string { return env[k] })
		return err
	}
	good := map[string]string{"REDIS_URL": "rediss://shopmesh-dev-gateway@master.shopmesh-dev-ratelimit.abc.euw1.cache.amazonaws.com:6379/0",
		"REDIS_AUTH": "iam", "REDIS_CACHE_NAME": "shopmesh-dev-ratelimit", "AWS_REGION": "eu-west-1"}
	if err := load(good); err != nil {
		t.Fatalf("valid IAM configuration refused: %v", err)
	}
	for name, tc := range map[string]struct {
		key, value, want string
	}{
		"plain redis":   {"REDIS_URL", "redis://u@cache:6379/0", "rediss://"},
		"no user":       {"REDIS_URL", "rediss://cache:6379/0", "user ID"},
		"password":      {"REDIS_URL", "rediss://u:secret@cache:6379/0", "no password"},
		"no cache name": {"REDIS_CACHE_NAME", "", "REDIS_CACHE_NAME"},
		"upper case":    {"REDIS_CACHE_NAME", "Shop", "lower case"},
		"no region":     {"AWS_REGION", "", "AWS_REGION"},
		"unknown auth":  {"REDIS_AUTH", "password", "empty or iam"},
	} {
		env := map[string]string{}
		for k, v := range good {
			env[k] = v
		}
		env[tc.key] = tc.value
		if err := load(env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error mentioning %q", name, err, tc.want)
		}
	}
}
