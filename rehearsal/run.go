package rehearsal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Options say where the real engines are and what to run.
type Options struct {
	Postgres string // a PostgreSQL URL of a user who may create roles and databases
	Redis    string // a Redis URL of a user who may change ACLs
	Bin      string // the folder holding the users, products, orders and gateway binaries
	Out      io.Writer
	// Scenarios to run, by name (Scenarios); empty runs all of them.
	Scenarios []string
	// HealthScale divides the NLB health check's interval (1: as declared, 10 s).
	HealthScale float64
}

// passwordGroup is the role whose members the test PostgreSQL authenticates by password.
const passwordGroup = "shopmesh_password_auth"

// Scenarios are the checks a rehearsal runs through the front, in order.
var Scenarios = []string{"order", "shared-limit", "client-address", "cache-outage", "rollout"}

// Divergence is something the stack's configuration does not do that it should, with the
// configuration key or resource to fix.
type Divergence struct {
	Scenario string
	Problem  string
	Fix      string
}

func (d Divergence) Error() string { return d.Scenario + ": " + d.Problem + "\n    fix: " + d.Fix }

// The addresses of the hops; each caller has one of its own in 127.0.N.0/24 (N from 10 up).
var (
	apiGatewayAddr = net.IPv4(127, 0, 0, 2) // the stage's endpoint
	vpcLinkAddr    = net.IPv4(127, 0, 0, 4) // where API Gateway's VPC link connects from
	nlbAddr        = net.IPv4(127, 0, 0, 5) // the NLB's private address
	sidecarAddr    = net.IPv4(127, 0, 0, 6) // Istio's inbound passthrough source
)

type rehearsal struct {
	s      Stack
	o      Options
	out    io.Writer
	logDir string

	db, dbRole, dbPassword string
	loginRoles             []string // the logins the bootstrap Job made, dropped with the database
	pgAdmin                *url.URL
	redisAddr              string
	cacheUser, cachePass   string

	services map[string]*forwarder // kube-proxy stand-ins by workload name
	pods     map[string][]*pod
	sidecars map[*pod]*forwarder
	nlb      *forwarder
	api      *apiGateway
	secrets  *secretsManager
	cache    *elastiCache
	sinkAddr string
	closers  []func()
	noted    map[string]bool
	mu       sync.Mutex
	// clientNet is the third octet of the callers' addresses, 127.0.clientNet.n.
	clientNet byte
}

// Run rehearses stack s and returns the divergences it found (joined), or an error that kept
// it from running.
func Run(ctx context.Context, s Stack, o Options) (err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.HealthScale <= 0 {
		o.HealthScale = 1
	}
	r := &rehearsal{s: s, o: o, out: o.Out, services: map[string]*forwarder{}, pods: map[string][]*pod{}, sidecars: map[*pod]*forwarder{}, noted: map[string]bool{}}
	if r.logDir, err = os.MkdirTemp("", "shopmesh-rehearsal-"+s.Name+"-"); err != nil {
		return err
	}
	defer r.close()
	nb := make([]byte, 1)
	_, _ = rand.Read(nb)
	r.clientNet = 10 + nb[0]%240
	fmt.Fprintf(r.out, "rehearsal of stack %s: logs in %s; callers from 127.0.%d.0/24\n", s.Name, r.logDir, r.clientNet)
	if err := r.engines(ctx); err != nil {
		return err
	}
	if err := r.standIns(); err != nil {
		return err
	}
	if err := r.runJobs(ctx); err != nil {
		return err
	}
	if err := r.startWorkloads(ctx); err != nil {
		return err
	}
	var found []error
	for _, name := range Scenarios {
		if len(o.Scenarios) > 0 && !contains(o.Scenarios, name) {
			continue
		}
		start := time.Now()
		ds := scenarioFuncs[name](ctx, r)
		status := "ok"
		if len(ds) > 0 {
			status = fmt.Sprintf("%d divergence(s)", len(ds))
		}
		fmt.Fprintf(r.out, "scenario %-15s %s (%.1fs)\n", name, status, time.Since(start).Seconds())
		for _, d := range ds {
			fmt.Fprintf(r.out, "  DIVERGES: %s\n    fix: %s\n", d.Problem, d.Fix)
			found = append(found, d)
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("stack %s: %d divergence(s) between what it renders and what the platform needs:\n%w", s.Name, len(found), errors.Join(found...))
	}
	fmt.Fprintf(r.out, "stack %s: no divergence\n", s.Name)
	r.closers = append(r.closers, func() { os.RemoveAll(r.logDir) }) // kept when something diverged
	return nil
}

var scenarioFuncs = map[string]func(context.Context, *rehearsal) []Divergence{
	"order": orderScenario, "shared-limit": sharedLimitScenario, "client-address": clientAddressScenario,
	"cache-outage": cacheOutageScenario, "rollout": rolloutScenario,
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *rehearsal) close() {
	for _, pods := range r.pods {
		for _, p := range pods {
			_ = p.cmd.Process.Signal(os.Interrupt)
		}
	}
	for _, pods := range r.pods {
		for _, p := range pods {
			select {
			case <-p.exit:
			case <-time.After(5 * time.Second):
				p.kill()
			}
		}
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// engines makes the stack's database login and cache user on the real PostgreSQL and Redis.
func (r *rehearsal) engines(ctx context.Context) error {
	var err error
	if r.pgAdmin, err = url.Parse(r.o.Postgres); err != nil || r.o.Postgres == "" {
		return fmt.Errorf("a PostgreSQL URL is needed (DATABASE_URL): %q", r.o.Postgres)
	}
	// The RDS master user, whose password the services read from Secrets Manager: a login of
	// its own that owns the stack's database, as the master user owns RDS's.
	r.db = "shopmesh_rehearsal_" + r.s.Name
	r.dbRole, r.dbPassword = r.db, randomHex(16)
	admin, err := pgx.Connect(ctx, r.o.Postgres)
	if err != nil {
		return fmt.Errorf("PostgreSQL (%s): %w", r.pgAdmin.Redacted(), err)
	}
	defer admin.Close(ctx)
	for _, q := range []string{
		"DROP DATABASE IF EXISTS " + r.db + " WITH (FORCE)", "DROP ROLE IF EXISTS " + r.dbRole,
		// Members of this group must give their password where the server trusts 127.0.0.1
		// otherwise (scripts/test-postgres.sh adds the pg_hba.conf rule).
		"DO $$ BEGIN CREATE ROLE " + passwordGroup + " NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
		// RDS's master user may create roles (rds_superuser), and is no superuser.
		"CREATE ROLE " + r.dbRole + " LOGIN CREATEROLE IN ROLE " + passwordGroup + " PASSWORD '" + r.dbPassword + "'",
		"CREATE DATABASE " + r.db + " OWNER " + r.dbRole,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			return fmt.Errorf("PostgreSQL: %s: %w", strings.SplitN(q, " PASSWORD", 2)[0], err)
		}
	}
	r.closers = append(r.closers, func() {
		c, err := pgx.Connect(context.Background(), r.o.Postgres)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+r.db+" WITH (FORCE)")
		for _, role := range r.loginRoles {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
		}
		_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+r.dbRole)
	})
	checked := "the server checks it"
	wrong := *r.pgAdmin
	wrong.User, wrong.Path = url.UserPassword(r.dbRole, "not-"+r.dbPassword), "/"+r.db
	if c, err := pgx.Connect(ctx, wrong.String()); err == nil {
		c.Close(ctx)
		checked = "NOT checked: the server trusts 127.0.0.1 for it (scripts/test-postgres.sh adds a rule for " + passwordGroup + ")"
	}
	fmt.Fprintf(r.out, "  PostgreSQL %s: database %s owned by login %s (the RDS master user; its password only in the Secrets Manager stand-in; %s)\n",
		r.pgAdmin.Host, r.db, r.dbRole, checked)

	opt, err := redis.ParseURL(r.o.Redis)
	if err != nil {
		return fmt.Errorf("a Redis URL is needed (REDIS_URL): %w", err)
	}
	r.redisAddr = opt.Addr
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	r.cacheUser, r.cachePass = r.s.Cache.UserID, randomHex(16)
	args := []any{"ACL", "SETUSER", r.cacheUser, "reset"}
	for _, rule := range strings.Fields(r.s.Cache.AccessString) {
		args = append(args, rule)
	}
	args = append(args, ">"+r.cachePass)
	if err := rdb.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("the Redis ACL: the cache user's access string %q is not a valid ACL (aws:elasticache/user:User accessString): %w", r.s.Cache.AccessString, err)
	}
	r.closers = append(r.closers, func() {
		c := redis.NewClient(opt)
		defer c.Close()
		c.Do(context.Background(), "ACL", "DELUSER", r.cacheUser)
	})
	fmt.Fprintf(r.out, "  Redis %s: ACL user %s with the declared access string %q\n", r.redisAddr, r.cacheUser, r.s.Cache.AccessString)
	return nil
}

func (r *rehearsal) standIns() error {
	// The master user's secret is the one the bootstrap Job reads; each data service reads its
	// login's (before the bootstrap existed: the master's too).
	var arn, cacheName, region string
	for _, j := range r.s.Jobs {
		if v := j.Env["DATABASE_SECRET_ARN"]; v != "" {
			arn = v
		}
	}
	var logins []string
	for _, w := range r.s.Workloads {
		if v := w.Env["DATABASE_SECRET_ARN"]; v != "" && arn == "" {
			arn = v
		} else if v != "" && v != arn {
			logins = append(logins, v)
		}
		if v := w.Env["REDIS_CACHE_NAME"]; v != "" {
			cacheName = v
		}
		if v := w.Env[podRegionEnv]; v != "" {
			region = v
		}
	}
	var err error
	if r.secrets, err = newSecretsManager(arn, r.dbRole, r.dbPassword, logins); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.secrets.Close() })
	if r.cache, err = newElastiCache(r.redisAddr, r.cacheUser, r.cachePass, cacheName, region); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.cache.Close() })
	sink, addr, err := newOTLPSink()
	if err != nil {
		return err
	}
	r.sinkAddr = addr
	r.closers = append(r.closers, func() { sink.Close() })
	if err := os.WriteFile(filepath.Join(r.logDir, "cache-ca.pem"), r.cache.caPEM, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "  stand-ins: Secrets Manager %s (secret %s), ElastiCache %s (TLS, IAM tokens of the pod identity, then Redis as %s), OTLP sink %s\n",
		r.secrets.URL(), arn, r.cache.Addr(), r.cacheUser, r.sinkAddr)
	return nil
}

var clusterName = regexp.MustCompile(`([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local(:[0-9]+)?`)

// env is the workload's rendered environment with only what must differ on one machine
// changed: cluster DNS names, the RDS, ElastiCache and mount paths, and the pod's AWS identity.
// Each change is printed once per workload.
func (r *rehearsal) env(w *Workload) (map[string]string, error) {
	env := map[string]string{}
	var changes []string
	changed := 0
	var fail error
	resolve := func(key, v string) string {
		return clusterName.ReplaceAllStringFunc(v, func(name string) string {
			m := clusterName.FindStringSubmatch(name)
			if m[2] == r.s.Namespace {
				if f := r.services[m[1]]; f != nil {
					return f.Addr()
				}
			}
			if key == "OTEL_EXPORTER_OTLP_ENDPOINT" {
				return r.sinkAddr
			}
			fail = fmt.Errorf("%s: %s names %s, which nothing in the rehearsal serves (is that workload started after %s?)", w.Name, key, name, w.Name)
			return name
		})
	}
	files, err := r.files(w)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(w.Env) {
		v := w.Env[k]
		nv := resolve(k, v)
		switch k {
		case "HTTP_ADDR":
			continue // each replica gets its own port (startPod)
		case "DATABASE_URL":
			u, err := url.Parse(nv)
			if err != nil {
				return nil, fmt.Errorf("%s: DATABASE_URL %q: %w", w.Name, v, err)
			}
			u.Host, u.Path = r.pgAdmin.Host, "/"+r.db
			// This machine's server has no certificate from RDS's CA: TLS is still required,
			// the certificate is not verified.
			if q := u.Query(); q.Get("sslmode") == "verify-full" {
				if _, err := os.Stat(q.Get("sslrootcert")); err != nil {
					q.Set("sslmode", "require")
					q.Del("sslrootcert")
					u.RawQuery = q.Encode()
				}
			}
			nv = u.String()
		case "REDIS_URL":
			u, err := url.Parse(nv)
			if err != nil {
				return nil, fmt.Errorf("%s: REDIS_URL %q: %w", w.Name, v, err)
			}
			u.Host = r.cache.Addr()
			nv = u.String()
		}
		if local, ok := files[nv]; ok {
			nv = local
		}
		if nv != v {
			changes = append(changes, fmt.Sprintf("%s=%s (rendered %s)", k, nv, v))
			changed++
		}
		env[k] = nv
	}
	if fail != nil {
		return nil, fail
	}
	if env["DATABASE_SECRET_ARN"] != "" || env["REDIS_AUTH"] == "iam" {
		for k, v := range awsEnv() {
			env[k] = v
		}
		env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = r.secrets.URL()
		changes = append(changes, "AWS credentials of the pod identity (IRSA's role in the cluster), AWS_ENDPOINT_URL_SECRETS_MANAGER="+r.secrets.URL())
	}
	if strings.HasPrefix(env["REDIS_URL"], "rediss://") {
		env["SSL_CERT_FILE"] = filepath.Join(r.logDir, "cache-ca.pem")
		changes = append(changes, "SSL_CERT_FILE=the ElastiCache stand-in's CA")
	}
	if !r.noted[w.Name] {
		r.noted[w.Name] = true
		fmt.Fprintf(r.out, "  %s: %d variables as rendered; changed for this machine: %s\n", w.Name, len(w.Env)-changed, strings.Join(changes, "; "))
	}
	return env, nil
}

// files writes the workload's mounted files, cluster names resolved, and maps each mount path
// to its local copy.
func (r *rehearsal) files(w *Workload) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range sortedKeys(w.Files) {
		content := clusterName.ReplaceAllStringFunc(w.Files[p], func(name string) string {
			m := clusterName.FindStringSubmatch(name)
			if f := r.services[m[1]]; f != nil && m[2] == r.s.Namespace {
				return f.Addr()
			}
			return name
		})
		local := filepath.Join(r.logDir, "files", w.Name, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			return nil, err
		}
		out[p] = local
		out[path.Dir(p)] = filepath.Dir(local)
	}
	return out, nil
}

func (r *rehearsal) startWorkloads(ctx context.Context) error {
	for i := range r.s.Workloads {
		w := &r.s.Workloads[i]
		replicas := w.Replicas
		if w.Name == "gateway" && replicas < 2 {
			fmt.Fprintf(r.out, "  gateway: the stack declares %d replica(s); the rehearsal runs 2, so that a limit kept per replica shows\n", replicas)
			replicas = 2
		}
		if replicas < 1 {
			return fmt.Errorf("%s: %d replicas", w.Name, replicas)
		}
		if w.Name != "gateway" {
			svc, err := newForwarder(w.Name, "127.0.0.1:0", net.IPv4(127, 0, 0, 1))
			if err != nil {
				return err
			}
			r.services[w.Name] = svc
			r.closers = append(r.closers, func() { svc.Close() })
		}
		for n := range replicas {
			if _, err := r.startReplica(ctx, w, n); err != nil {
				return err
			}
		}
		fmt.Fprintf(r.out, "  %s: %d replica(s) ready\n", w.Name, replicas)
	}
	gw, err := r.s.Workload("gateway")
	if err != nil {
		return err
	}
	_ = gw
	from := nlbAddr
	if r.s.Edge.PreserveClient {
		from = vpcLinkAddr // the NLB passes the VPC link's address on
	}
	if r.nlb, err = newForwarder("nlb", nlbAddr.String()+":0", from); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.nlb.Close() })
	for _, p := range r.pods["gateway"] {
		if err := r.registerTarget(ctx, p); err != nil {
			return err
		}
	}
	if r.api, err = newAPIGateway(apiGatewayAddr.String()+":0", r.s.Edge, r.nlb.Addr(), vpcLinkAddr); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.api.Close() })
	fmt.Fprintf(r.out, "  front: API Gateway stage %s → NLB %s (from %s) → sidecar of each gateway pod (from %s) → gateway\n",
		r.api.URL(), r.nlb.Addr(), from, sidecarAddr)
	return nil
}

// startReplica starts replica n of w and makes it an endpoint: of its Service, or for the
// gateway behind a sidecar of its own (registration in the NLB is the caller's).
func (r *rehearsal) startReplica(ctx context.Context, w *Workload, n int) (*pod, error) {
	env, err := r.env(w)
	if err != nil {
		return nil, err
	}
	p, err := startPod(ctx, r.o.Bin, r.logDir, w, n, env)
	if err != nil {
		fix := "the " + w.Name + " ConfigMap: the log above names the key"
		if w.Name == "gateway" {
			fix += "; the gateway is ready only while the shared limiter can decide (rate-limit-cache): the cache user's access string" +
				" (aws:elasticache/user:User accessString) must let the limiter's script run, and REDIS_URL/REDIS_AUTH must reach it"
		}
		return nil, fmt.Errorf("%w\n    fix: %s", err, fix)
	}
	r.mu.Lock()
	r.pods[w.Name] = append(r.pods[w.Name], p)
	r.mu.Unlock()
	if svc := r.services[w.Name]; svc != nil {
		svc.Register(p.addr)
	}
	if w.Name == "gateway" {
		sc, err := newForwarder("sidecar-"+p.name, "127.0.0.1:0", sidecarAddr)
		if err != nil {
			return nil, err
		}
		sc.Register(p.addr)
		r.sidecars[p] = sc
		r.closers = append(r.closers, func() { sc.Close() })
	}
	return p, nil
}

// registerTarget registers a gateway pod in the NLB once the target group's health check has
// passed HealthyAfter times in a row (the pod's readiness gate waits for just that).
func (r *rehearsal) registerTarget(ctx context.Context, p *pod) error {
	sc := r.sidecars[p]
	interval := time.Duration(float64(r.s.Edge.HealthInterval) / r.o.HealthScale)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: nlbAddr}}).DialContext, DisableKeepAlives: true,
	}}
	healthy := 0
	deadline := time.Now().Add(time.Duration(r.s.Edge.HealthyAfter+5) * interval)
	for healthy < r.s.Edge.HealthyAfter {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never passed the NLB's health check %s (aws:lb/targetGroup:TargetGroup healthCheck)", p.name, r.s.Edge.HealthPath)
		}
		resp, err := client.Get("http://" + sc.Addr() + r.s.Edge.HealthPath)
		if err == nil {
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusOK {
			healthy++
		} else {
			healthy = 0
		}
		if healthy < r.s.Edge.HealthyAfter {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
	}
	r.nlb.Register(sc.Addr())
	return nil
}

// runJobs runs each Job to completion, as Pulumi waits for a Job before what depends on it, and
// has the server check the passwords of the logins the bootstrap made.
func (r *rehearsal) runJobs(ctx context.Context) error {
	for _, j := range r.s.Jobs {
		// The logins it makes (shopmesh_<schema>, package dbbootstrap) go with the database,
		// even when it fails half-way.
		for _, pair := range strings.Split(j.Env["DATABASE_LOGINS"], ",") {
			if schema, _, ok := strings.Cut(pair, "="); ok {
				r.loginRoles = append(r.loginRoles, "shopmesh_"+schema)
			}
		}
		env, err := r.env(&Workload{Name: j.Name, Env: j.Env})
		if err != nil {
			return err
		}
		jctx, cancel := context.WithTimeout(ctx, time.Minute)
		cmd := exec.CommandContext(jctx, filepath.Join(r.o.Bin, j.Binary), j.Args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.logDir}
		for _, k := range sortedKeys(env) {
			cmd.Env = append(cmd.Env, k+"="+env[k])
		}
		out, err := cmd.CombinedOutput()
		cancel()
		_ = os.WriteFile(filepath.Join(r.logDir, j.Name+".log"), out, 0o600)
		if err != nil {
			return fmt.Errorf("the %s Job (%s %s) failed (%v):\n    %s\n    fix: its environment in the stack, or the master user's secret",
				j.Name, j.Binary, strings.Join(j.Args, " "), err, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
		}
		fmt.Fprintf(r.out, "  job %s (%s %s) completed:\n    %s\n", j.Name, j.Binary, strings.Join(j.Args, " "),
			strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n    "))
	}
	return r.checkLoginPasswords(ctx)
}

// checkLoginPasswords puts the logins the bootstrap stored in their secrets into the group whose
// passwords this machine's server checks (scripts/test-postgres.sh), and records them to drop.
func (r *rehearsal) checkLoginPasswords(ctx context.Context) error {
	admin, err := pgx.Connect(ctx, r.o.Postgres)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	for _, w := range r.s.Workloads {
		arn := w.Env["DATABASE_SECRET_ARN"]
		user, _, ok := r.secrets.value(arn)
		if arn == "" || !ok || user == r.dbRole {
			continue
		}
		if _, err := admin.Exec(ctx, "GRANT "+passwordGroup+" TO "+pgx.Identifier{user}.Sanitize()); err != nil {
			return fmt.Errorf("PostgreSQL: login %s of %s: %w", user, w.Name, err)
		}
	}
	return nil
}
