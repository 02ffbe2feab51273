package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/mtls"
	"github.com/shopmesh/shopmesh/services/pki"
)

// mtlsState is what UseMTLS adds to a server.
type mtlsState struct {
	material   *mtls.Material
	healthAddr string
	handshakes *prometheus.CounterVec
}

// EnableMTLS serves mutual TLS with the material cfg names when cfg.Mode is mtls, admitting
// only cfg.Allowed; with TLS off it does nothing and returns a nil material. The material is
// reloaded from its files while the server serves; the service's clients use it too.
func (s *Server) EnableMTLS(cfg mtls.Config) (*mtls.Material, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	m, err := mtls.Load(cfg, s.logger)
	if err != nil {
		return nil, err
	}
	if err := s.UseMTLS(m, cfg.Allowed, cfg.HealthAddr); err != nil {
		return nil, err
	}
	return m, nil
}

// UseMTLS makes the server terminate mutual TLS with material and admit only the callers in
// allowed (service names in its own namespace, or SPIFFE IDs). /healthz, /readyz and /metrics
// are also served in plain HTTP on healthAddr, for the orchestrator's probes and scrapers.
func (s *Server) UseMTLS(material *mtls.Material, allowed []string, healthAddr string) error {
	self := material.ID()
	admit := map[string]bool{}
	var names []string
	for _, a := range allowed {
		id, err := material.Peer(a)
		if err != nil {
			return fmt.Errorf("TLS_ALLOWED_CALLERS: %w", err)
		}
		admit[id.String()] = true
		names = append(names, id.String())
	}
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtls_denied_total", Help: "Requests refused with 403 because the caller's identity is not allowed, by identity.",
	}, []string{"peer"})
	admitted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtls_requests_total", Help: "Requests from callers whose certificate and identity were verified, by identity.",
	}, []string{"peer"})
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tls_handshake_failures_total", Help: "Failed TLS handshakes, by reason.",
	}, []string{"reason"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mtls_info", Help: "This workload's identity and the identities allowed to call it (comma-separated); always 1.",
	}, []string{"identity", "allowed"})
	info.WithLabelValues(self.String(), strings.Join(names, ",")).Set(1)
	s.Registry.MustRegister(denied, admitted, handshakes, info)
	s.mtls = &mtlsState{material: material, healthAddr: healthAddr, handshakes: handshakes}

	s.Echo.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if req.TLS == nil { // the plain health listener, which serves nothing else
				return next(c)
			}
			if len(req.TLS.PeerCertificates) == 0 {
				return fault.New(fault.ErrForbidden, "a client certificate is required")
			}
			id, err := pki.IDFromCert(req.TLS.PeerCertificates[0])
			if err != nil {
				denied.WithLabelValues("invalid").Inc()
				return fault.New(fault.ErrForbidden, "the client certificate carries no shopmesh identity")
			}
			if !admit[id.String()] {
				denied.WithLabelValues(id.String()).Inc()
				s.logger.WarnContext(req.Context(), "caller refused", "peer", id.String(), "reason", "not on the allow-list of "+self.Service)
				return fault.New(fault.ErrForbidden, fmt.Sprintf("identity %s is not allowed to call %s", id, self.Service))
			}
			admitted.WithLabelValues(id.String()).Inc()
			c.Set(PeerKey, id)
			return next(c)
		}
	})
	return nil
}

// PeerKey is the echo context key of the caller's verified pki.ID under mutual TLS.
const PeerKey = "mtls.peer"

// serveMTLS wraps ln in TLS, serves health probes in plain HTTP, and reloads the material.
func (s *Server) serveMTLS(ctx context.Context, srv *http.Server, ln net.Listener) (net.Listener, func(), error) {
	hl, err := net.Listen("tcp", s.mtls.healthAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s (HEALTH_ADDR): %w", s.mtls.healthAddr, err)
	}
	health := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		s.Echo.ServeHTTP(w, r)
	})}
	go func() { _ = health.Serve(hl) }()
	stop := make(chan struct{})
	go s.mtls.material.Watch(stop, 2*time.Second)
	srv.ErrorLog = slog.NewLogLogger(handshakeCounter{s.mtls.handshakes, s.logger.Handler()}, slog.LevelWarn)
	s.logger.Info("mTLS on", "identity", s.mtls.material.ID().String(), "health_addr", hl.Addr().String())
	return tls.NewListener(ln, s.mtls.material.ServerConfig()), func() {
		close(stop)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = health.Shutdown(sctx)
	}, nil
}

// handshakeCounter counts the TLS handshake errors net/http logs, by reason, and passes the
// lines on to the service's log.
type handshakeCounter struct {
	failures *prometheus.CounterVec
	next     slog.Handler
}

func (h handshakeCounter) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (h handshakeCounter) WithAttrs(a []slog.Attr) slog.Handler {
	return handshakeCounter{h.failures, h.next.WithAttrs(a)}
}
func (h handshakeCounter) WithGroup(n string) slog.Handler {
	return handshakeCounter{h.failures, h.next.WithGroup(n)}
}

func (h handshakeCounter) Handle(ctx context.Context, r slog.Record) error {
	if msg := []byte(r.Message); bytes.Contains(msg, []byte("TLS handshake error")) {
		h.failures.WithLabelValues(handshakeReason(r.Message)).Inc()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func handshakeReason(msg string) string {
	switch {
	case strings.Contains(msg, "didn't provide a certificate"), strings.Contains(msg, "certificate required"):
		return "no_client_certificate"
	case strings.Contains(msg, "unknown authority"), strings.Contains(msg, "unknown certificate authority"):
		return "unknown_ca"
	case strings.Contains(msg, "expired"):
		return "expired"
	case strings.Contains(msg, "remote error: tls: bad certificate"):
		return "client_rejected_server_certificate"
	case strings.Contains(msg, "protocol version"):
		return "protocol_version"
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "reset by peer"):
		return "aborted"
	}
	return "other"
}
