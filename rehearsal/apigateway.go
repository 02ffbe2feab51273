package rehearsal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// apiGateway stands for the REST API's stage in front of the NLB, as the API Gateway developer
// guide describes it for an HTTP_PROXY integration over a VPC link:
//   - the stage name is the first path segment; a path no resource matches is answered 403
//     {"message":"Missing Authentication Token"} ("Troubleshoot … Missing Authentication Token");
//   - a method of the resource itself wins over ANY ("Set up a method");
//   - the stage's method throttling is a token bucket per method path, answered 429 {"message":
//     "Too Many Requests"} ("Throttle requests to your REST APIs"; "*/*" for every method);
//   - the client's headers reach the integration as they came, Host set to the integration
//     endpoint's ("How do I forward the host header…", Knowledge Center), and no
//     X-Forwarded-For is added; the integration's request parameters then set headers, a
//     context variable from the request's context ("Parameter mapping source reference for REST
//     APIs": context.identity.sourceIp is the source address of the caller's TCP connection);
//   - X-Amzn-Trace-Id is added when the stage traces with X-Ray;
//   - the integration times out after its timeout with 504 {"message": "Endpoint request timed
//     out"}.
//
// It opens a new connection to the NLB for every request, from its own address: that spreads
// the requests over the gateway replicas evenly, the worst case for limits kept per replica.
type apiGateway struct {
	edge  Edge
	nlb   string
	srv   *http.Server
	ln    net.Listener
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

type matchKey struct{}

func newAPIGateway(listen string, edge Edge, nlb string, from net.IP) (*apiGateway, error) {
	for _, m := range edge.Methods {
		for h, src := range m.HeaderMappings {
			if src != "context.identity.sourceIp" && !strings.HasPrefix(src, "method.request.header.") && !strings.HasPrefix(src, "'") {
				return nil, fmt.Errorf("API Gateway %s %s maps header %s from %s, which the rehearsal does not model", m.Verb, m.Resource, h, src)
			}
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	g := &apiGateway{edge: edge, nlb: nlb, ln: ln, buckets: map[string]*bucket{}}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 5 * time.Second}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: g.rewrite,
		Transport: &http.Transport{
			DialContext: dialer.DialContext, DisableKeepAlives: true,
			ResponseHeaderTimeout: edge.IntegrationWait,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status, msg := http.StatusInternalServerError, "Internal server error"
			var ne net.Error
			if errorsAs(err, &ne) && ne.Timeout() {
				status, msg = http.StatusGatewayTimeout, "Endpoint request timed out"
			}
			refuse(w, status, msg)
		},
	}
	g.srv = &http.Server{Handler: http.HandlerFunc(g.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

func (g *apiGateway) URL() string { return "http://" + g.ln.Addr().String() + "/" + g.edge.Stage }

func (g *apiGateway) Close() error { return g.srv.Close() }

func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", strings.ReplaceAll(http.StatusText(status), " ", "")+"Exception")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"message\":%q}", msg)
}

func (g *apiGateway) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/"+g.edge.Stage)
	if !ok || (path != "" && !strings.HasPrefix(path, "/")) {
		refuse(w, http.StatusForbidden, "Missing Authentication Token")
		return
	}
	m := g.match(path, r.Method)
	if m == nil {
		refuse(w, http.StatusForbidden, "Missing Authentication Token")
		return
	}
	throttle := "*/*"
	if key := strings.TrimPrefix(strings.TrimSuffix(m.Resource, "/{proxy+}"), "/") + "/" + m.Verb; m.Verb != "ANY" {
		if _, ok := g.edge.Throttles[key]; ok {
			throttle = key
		}
	}
	if !g.take(throttle) {
		refuse(w, http.StatusTooManyRequests, "Too Many Requests")
		return
	}
	r2 := r.Clone(context.WithValue(r.Context(), matchKey{}, m))
	r2.URL.Path = path
	r2.URL.RawPath = ""
	g.proxy.ServeHTTP(w, r2)
}

// match finds the method for path: a resource's own verb before its ANY, the resource itself
// before its {proxy+} child.
func (g *apiGateway) match(path, verb string) *Method {
	var best *Method
	score := 0
	for i := range g.edge.Methods {
		m := &g.edge.Methods[i]
		s := 0
		if base, proxy := strings.CutSuffix(m.Resource, "/{proxy+}"); proxy {
			if rest, ok := strings.CutPrefix(path, base+"/"); ok && rest != "" {
				s = 1
			}
		} else if path == m.Resource {
			s = 3
		}
		if s == 0 || (m.Verb != "ANY" && m.Verb != verb) {
			continue
		}
		if m.Verb != "ANY" {
			s++
		}
		if s > score {
			best, score = m, s
		}
	}
	return best
}

func (g *apiGateway) take(path string) bool {
	t, ok := g.edge.Throttles[path]
	if !ok {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	b := g.buckets[path]
	if b == nil {
		b = &bucket{tokens: float64(t.Burst), last: now}
		g.buckets[path] = b
	}
	b.tokens = math.Min(float64(t.Burst), b.tokens+now.Sub(b.last).Seconds()*t.Rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (g *apiGateway) rewrite(pr *httputil.ProxyRequest) {
	m := pr.In.Context().Value(matchKey{}).(*Method)
	pr.Out.URL = &url.URL{Scheme: "http", Host: g.nlb, Path: pr.In.URL.Path, RawQuery: pr.In.URL.RawQuery}
	pr.Out.Host = g.nlb
	// ReverseProxy drops inbound X-Forwarded-*; API Gateway passes the client's on as they came.
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v, ok := pr.In.Header[h]; ok {
			pr.Out.Header[h] = v
		}
	}
	source, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
	for h, src := range m.HeaderMappings {
		switch {
		case src == "context.identity.sourceIp":
			pr.Out.Header.Set(h, source)
		case strings.HasPrefix(src, "method.request.header."):
			pr.Out.Header.Set(h, pr.In.Header.Get(strings.TrimPrefix(src, "method.request.header.")))
		default:
			pr.Out.Header.Set(h, strings.Trim(src, "'"))
		}
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	pr.Out.Header.Set("X-Amzn-Trace-Id", fmt.Sprintf("Root=1-%08x-%s", time.Now().Unix(), hex.EncodeToString(id)))
}
