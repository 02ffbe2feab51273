package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// FaultOptions configure the fault scenario.
type FaultOptions struct {
	DatabaseURL string // PostgreSQL: the services' schemas are created in it, fresh
	RedisURL    string // Redis behind a proxy the scenario can cut
	Executable  string // a shopmesh binary built with -tags faults, run once per service
	Workers     int    // customers placing orders without pause
	Phase       time.Duration
	Progress    io.Writer
}

// FaultRow is one fault's line of the report.
type FaultRow struct {
	Fault                       string
	Orders, Created, Failed     int // order attempts (each with its own key, retried), 201s, given up
	Unfinished                  int // still being retried when the phase ended
	Stored, Pending, Violations int
	Notes                       []string
}

// The reservations' life is short here so that what a crash leaves pending is settled within
// the scenario: products releases after reservationTTL, orders confirms every reconcile.
const (
	reservationTTL   = 6 * time.Second
	reconcileEvery   = 500 * time.Millisecond
	initialStock     = 1_000_000
	settleTimeout    = 30 * time.Second
	faultProductKind = 3
)

// Faults runs order traffic through the gateway while it, in turn, kills products in the
// middle of reservations, makes orders exit between reserving and storing, terminates every
// PostgreSQL connection, and cuts Redis off. After each fault it waits until the shop has
// settled and checks that stock and orders agree. It returns the rows and an error when any
// invariant was violated.
func Faults(ctx context.Context, o FaultOptions, out io.Writer) ([]FaultRow, error) {
	db, err := pgxpool.New(ctx, o.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL (DATABASE_URL): %w", err)
	}
	defer db.Close()
	if err := db.Ping(ctx); err != nil {
		return nil, fmt.Errorf("the fault scenario needs PostgreSQL; DATABASE_URL does not answer: %w", err)
	}
	redisAddr, err := redisHostPort(o.RedisURL)
	if err != nil {
		return nil, err
	}
	s := &shopRun{o: o, db: db, suffix: randomHex(4), procs: map[string]*exec.Cmd{}}
	defer s.stopAll()
	if s.dir, err = os.MkdirTemp("", "shopmesh-faults-"); err != nil {
		return nil, err
	}
	s.redis, err = startCuttableProxy(redisAddr)
	if err != nil {
		return nil, err
	}
	defer s.redis.close()
	defer s.dropSchemas(context.WithoutCancel(ctx))
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	faults := []struct {
		name string
		do   func(context.Context) (string, error)
	}{
		{"none (steady traffic)", func(context.Context) (string, error) { return "", nil }},
		{"products killed mid-reservation", s.killProducts},
		{"orders exits between reserve and store", s.crashOrders},
		{"PostgreSQL connections terminated", s.terminateConnections},
		{"Redis unreachable", s.cutRedis},
	}
	var rows []FaultRow
	violations := 0
	for _, f := range faults {
		s.logf("fault: %s", f.name)
		row, err := s.phase(ctx, f.name, f.do)
		if err != nil {
			return rows, fmt.Errorf("%s: %w (service logs in %s)", f.name, err, s.dir)
		}
		rows = append(rows, row)
		violations += row.Violations
	}
	PrintFaults(out, rows)
	if violations > 0 {
		return rows, fmt.Errorf("%d invariant violation(s); service logs in %s", violations, s.dir)
	}
	os.RemoveAll(s.dir)
	return rows, nil
}

// PrintFaults writes the report.
func PrintFaults(w io.Writer, rows []FaultRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\torders\t201\tgave up\tunfinished\tstored (total)\tpending\tviolations\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Fault, r.Orders, r.Created, r.Failed, r.Unfinished, r.Stored, r.Pending, r.Violations)
	}
	tw.Flush()
	for _, r := range rows {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", r.Fault, n)
		}
	}
	fmt.Fprintln(w, "checked after each fault, once the shop settled: for every product, initial stock = stock + pending + sold;")
	fmt.Fprintln(w, "every 201 is one stored order; every stored order holds confirmed stock for its items; no key has two orders")
}

type shopRun struct {
	o      FaultOptions
	db     *pgxpool.Pool
	dir    string
	suffix string
	redis  *cuttableProxy
	addrs  map[string]string
	mu     sync.Mutex
	procs  map[string]*exec.Cmd
	token  []string // one customer token per worker
	items  []uuid.UUID
	placed map[string]uuid.UUID // Idempotency-Key → the order a 201 named
}

func (s *shopRun) logf(format string, args ...any) {
	if s.o.Progress != nil {
		fmt.Fprintf(s.o.Progress, format+"\n", args...)
	}
}

func (s *shopRun) schema(svc string) string { return "faults_" + s.suffix + "_" + svc }

func (s *shopRun) env(svc string, extra ...string) []string {
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"HTTP_ADDR=" + s.addrs[svc], "TLS_MODE=off", "LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=2s",
		"JWKS_URL=http://" + s.addrs["users"] + "/.well-known/jwks.json"}
	switch svc {
	case "users":
		base = append(base, "DATABASE_URL="+s.o.DatabaseURL, "DATABASE_SCHEMA="+s.schema(svc),
			"ADMIN_EMAIL=admin@faults.example", "ADMIN_PASSWORD=faults-admin-password")
	case "products":
		base = append(base, "DATABASE_URL="+s.o.DatabaseURL, "DATABASE_SCHEMA="+s.schema(svc), "SEED_DEMO_CATALOG=false",
			"RESERVATION_TTL="+reservationTTL.String(), "RESERVATION_SWEEP=250ms")
	case "orders":
		base = append(base, "DATABASE_URL="+s.o.DatabaseURL, "DATABASE_SCHEMA="+s.schema(svc),
			"PRODUCTS_URL=http://"+s.addrs["products"], "PRODUCTS_TIMEOUT=2s", "REQUEST_TIMEOUT=4s",
			"RECONCILE_INTERVAL="+reconcileEvery.String(), "CONFIRM_MARGIN=2s")
	case "gateway":
		base = append(base, "USERS_URL=http://"+s.addrs["users"], "PRODUCTS_URL=http://"+s.addrs["products"],
			"ORDERS_URL=http://"+s.addrs["orders"], "REDIS_URL=redis://"+s.redis.addr()+"/0", "RATE_LIMIT_FAIL_OPEN=true",
			"UPSTREAM_TIMEOUT=5s")
	}
	return append(base, extra...)
}

// run starts svc as its own process and waits until it is ready.
func (s *shopRun) run(ctx context.Context, svc string, extra ...string) error {
	logFile, err := os.OpenFile(filepath.Join(s.dir, svc+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.o.Executable, "_service", svc)
	cmd.Env, cmd.Stdout, cmd.Stderr = s.env(svc, extra...), logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", svc, err)
	}
	go func() { _ = cmd.Wait(); logFile.Close() }()
	s.mu.Lock()
	s.procs[svc] = cmd
	s.mu.Unlock()
	return waitReady(ctx, "http://"+s.addrs[svc], 30*time.Second)
}

func (s *shopRun) start(ctx context.Context) error {
	s.addrs = map[string]string{}
	for _, svc := range []string{"users", "products", "orders", "gateway"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		s.addrs[svc] = ln.Addr().String()
		ln.Close()
	}
	for _, svc := range []string{"users", "products", "orders", "gateway"} {
		if err := s.run(ctx, svc); err != nil {
			return err
		}
	}
	return nil
}

// kill stops svc at once (SIGKILL: no drain, no graceful shutdown) and waits for it to go.
func (s *shopRun) kill(svc string) {
	s.mu.Lock()
	cmd := s.procs[svc]
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *shopRun) stopAll() {
	for _, svc := range []string{"gateway", "orders", "products", "users"} {
		s.kill(svc)
	}
}

func (s *shopRun) dropSchemas(ctx context.Context) {
	for _, svc := range []string{"users", "products", "orders"} {
		_, _ = s.db.Exec(ctx, `DROP SCHEMA IF EXISTS `+s.schema(svc)+` CASCADE`)
	}
}

// prepare creates the customers and a catalog of products with ample stock.
func (s *shopRun) prepare(ctx context.Context) error {
	client := &http.Client{Timeout: 10 * time.Second}
	gw := "http://" + s.addrs["gateway"]
	admin, err := login(ctx, client, gw, "admin@faults.example", "faults-admin-password")
	if err != nil {
		return err
	}
	for i := range faultProductKind {
		out, err := call(ctx, client, http.MethodPost, gw+"/products", admin, map[string]any{
			"name": fmt.Sprintf("Fault test item %d", i), "description": "", "price_cents": 100 + i, "currency": "EUR", "stock": initialStock}, http.StatusCreated)
		if err != nil {
			return fmt.Errorf("create a product: %w", err)
		}
		var p struct{ ID uuid.UUID }
		if err := json.Unmarshal(out, &p); err != nil {
			return err
		}
		s.items = append(s.items, p.ID)
	}
	for range s.o.Workers {
		tok, err := customerToken(ctx, client, gw)
		if err != nil {
			return err
		}
		s.token = append(s.token, tok)
	}
	s.placed = map[string]uuid.UUID{}
	return nil
}

// phase runs the traffic, injects the fault a third of the way in, stops the traffic, waits
// for the shop to settle and checks the invariants.
func (s *shopRun) phase(ctx context.Context, name string, fault func(context.Context) (string, error)) (FaultRow, error) {
	row := FaultRow{Fault: name}
	tctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range s.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 8 * time.Second}
			for n := 0; tctx.Err() == nil; n++ {
				key := uuid.NewString()
				id, ok := s.placeOrder(tctx, client, s.token[w], key, n)
				mu.Lock()
				row.Orders++
				if ok {
					row.Created++
					s.placed[key] = id
				} else if tctx.Err() == nil {
					row.Failed++
				} else {
					row.Unfinished++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(s.o.Phase / 3)
	note, err := fault(ctx)
	if note != "" {
		row.Notes = append(row.Notes, note)
	}
	time.Sleep(2 * s.o.Phase / 3)
	stop()
	wg.Wait()
	if err != nil {
		return row, err
	}
	if err := s.settle(ctx); err != nil {
		row.Notes = append(row.Notes, err.Error())
	}
	return s.check(ctx, row)
}

// placeOrder places one order as a careful client does: the same Idempotency-Key on every
// try, retrying what may succeed later, for up to 20 s. It reports the order a 201 named.
func (s *shopRun) placeOrder(ctx context.Context, client *http.Client, token, key string, n int) (uuid.UUID, bool) {
	body := map[string]any{"items": []map[string]any{{"product_id": s.items[n%len(s.items)], "quantity": 1 + n%3}}}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, "http://"+s.addrs["gateway"]+"/orders", jsonBody(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				var o struct{ ID uuid.UUID }
				if json.Unmarshal(data, &o) == nil {
					return o.ID, true
				}
			}
			if resp.StatusCode == http.StatusUnprocessableEntity {
				return uuid.Nil, false // a client error: retrying would not help
			}
		}
		if ctx.Err() != nil && time.Now().After(deadline.Add(-15*time.Second)) {
			return uuid.Nil, false // the phase is over and this order had its chances
		}
		time.Sleep(200 * time.Millisecond)
	}
	return uuid.Nil, false
}

func (s *shopRun) killProducts(ctx context.Context) (string, error) {
	s.kill("products")
	time.Sleep(time.Second)
	return "", s.run(ctx, "products")
}

// crashOrders restarts orders with the fault flag: the next order that reaches it is reserved
// and never stored, because the process exits in between. Then orders starts again, healthy.
func (s *shopRun) crashOrders(ctx context.Context) (string, error) {
	s.kill("orders")
	if err := s.run(ctx, "orders", "FAULT_EXIT_AFTER_RESERVE=true"); err != nil {
		return "", err
	}
	s.mu.Lock()
	cmd := s.procs["orders"]
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	exited := false
	for time.Now().Before(deadline) && !exited {
		exited = cmd.Process.Signal(syscall.Signal(0)) != nil
		time.Sleep(20 * time.Millisecond)
	}
	if !exited {
		return "", errors.New("orders with FAULT_EXIT_AFTER_RESERVE did not exit: is this binary built with -tags faults?")
	}
	return "orders exited after a reservation, before storing its order", s.run(ctx, "orders")
}

func (s *shopRun) terminateConnections(ctx context.Context) (string, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&n)
	return fmt.Sprintf("%d backends terminated", n), err
}

func (s *shopRun) cutRedis(context.Context) (string, error) {
	s.redis.cut()
	time.Sleep(3 * time.Second)
	return "Redis cut off for 3 s", s.redis.restore()
}

// settle waits until no reservation is pending and every stored order is confirmed.
func (s *shopRun) settle(ctx context.Context) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		var pending, unconfirmed int
		err := s.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+s.schema("products")+`.reservations WHERE status = 'pending'),
			(SELECT count(*) FROM `+s.schema("orders")+`.orders WHERE NOT stock_confirmed)`).Scan(&pending, &unconfirmed)
		if err == nil && pending == 0 && unconfirmed == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not settled after %v: %d reservations pending, %d orders unconfirmed (%v)", settleTimeout, pending, unconfirmed, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check verifies the invariants over everything the scenario did so far.
func (s *shopRun) check(ctx context.Context, row FaultRow) (FaultRow, error) {
	ps, ors := s.schema("products"), s.schema("orders")
	fail := func(format string, args ...any) {
		row.Violations++
		row.Notes = append(row.Notes, "VIOLATION: "+fmt.Sprintf(format, args...))
	}
	// Stock is conserved: what is not in stock is held by a reservation.
	rows, err := s.db.Query(ctx, `SELECT p.id, p.stock,
		coalesce(sum(i.quantity) FILTER (WHERE r.status = 'pending'), 0),
		coalesce(sum(i.quantity) FILTER (WHERE r.status = 'confirmed'), 0)
		FROM `+ps+`.products p LEFT JOIN `+ps+`.reservation_items i ON i.product_id = p.id
		LEFT JOIN `+ps+`.reservations r ON r.order_id = i.order_id GROUP BY p.id, p.stock`)
	if err != nil {
		return row, err
	}
	for rows.Next() {
		var id uuid.UUID
		var stock, pending, sold int
		if err := rows.Scan(&id, &stock, &pending, &sold); err != nil {
			return row, err
		}
		row.Pending += pending
		if stock+pending+sold != initialStock {
			fail("product %s: stock %d + pending %d + sold %d ≠ %d", id, stock, pending, sold, initialStock)
		}
	}
	rows.Close()
	// Every stored order holds confirmed stock for exactly its items, and is one key's.
	var stored, withoutStock, keyless, shared int
	err = s.db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM `+ors+`.orders),
		(SELECT count(*) FROM `+ors+`.order_items oi LEFT JOIN `+ps+`.reservation_items ri
			ON ri.order_id = oi.order_id AND ri.product_id = oi.product_id AND ri.quantity = oi.quantity
			LEFT JOIN `+ps+`.reservations r ON r.order_id = oi.order_id AND r.status = 'confirmed'
			WHERE ri.order_id IS NULL OR r.order_id IS NULL),
		(SELECT count(*) FROM `+ors+`.orders o WHERE NOT EXISTS (SELECT 1 FROM `+ors+`.idempotency_keys k WHERE k.order_id = o.id AND k.completed)),
		(SELECT count(*) FROM (SELECT order_id FROM `+ors+`.idempotency_keys WHERE completed GROUP BY order_id HAVING count(*) > 1) d)`).
		Scan(&stored, &withoutStock, &keyless, &shared)
	if err != nil {
		return row, err
	}
	row.Stored = stored
	if withoutStock > 0 {
		fail("%d order lines without confirmed stock", withoutStock)
	}
	if keyless > 0 || shared > 0 {
		fail("%d orders no key completed, %d orders shared by keys", keyless, shared)
	}
	// Every 201 the clients got is a stored order.
	ids := make([]uuid.UUID, 0, len(s.placed))
	for _, id := range s.placed {
		ids = append(ids, id)
	}
	var found int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+ors+`.orders WHERE id = ANY($1)`, ids).Scan(&found); err != nil {
		return row, err
	}
	if found != len(ids) {
		fail("%d of the %d orders answered 201 are not stored", len(ids)-found, len(ids))
	}
	if stored != len(ids) {
		row.Notes = append(row.Notes, fmt.Sprintf("%d orders stored whose 201 no client saw (the client gave up first; each is one key's)", stored-len(ids)))
	}
	return row, nil
}

func waitReady(ctx context.Context, base string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for !Answers(ctx, base+"/readyz") {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not ready within %v", base, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Answers reports whether url answers 200 within a second.
func Answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return strings.NewReader(string(b))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redisHostPort(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("the fault scenario needs Redis: set REDIS_URL (redis://127.0.0.1:6379/0)")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "redis" || u.Host == "" {
		return "", fmt.Errorf("REDIS_URL must be redis://host:port/db, got %q", raw)
	}
	return u.Host, nil
}

// cuttableProxy forwards TCP to a fixed address until it is cut: then it closes every open
// connection and refuses new ones, until restored on the same port.
type cuttableProxy struct {
	target string
	mu     sync.Mutex
	ln     net.Listener
	port   string
	conns  map[net.Conn]bool
}

func startCuttableProxy(target string) (*cuttableProxy, error) {
	p := &cuttableProxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	_, p.port, _ = net.SplitHostPort(ln.Addr().String())
	p.serve(ln)
	return p, nil
}

func (p *cuttableProxy) addr() string { return "127.0.0.1:" + p.port }

func (p *cuttableProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *cuttableProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

func (p *cuttableProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
}

func (p *cuttableProxy) restore() error {
	ln, err := net.Listen("tcp", p.addr())
	if err != nil {
		return fmt.Errorf("reopen the Redis proxy: %w", err)
	}
	p.serve(ln)
	return nil
}

func (p *cuttableProxy) close() { p.cut() }
