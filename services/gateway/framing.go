package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/shopmesh/shopmesh/services/gateway/h1"
)

// The gateway's rules for a request's framing, for both transports: the event loops apply
// them to the heads they parse, and the net/http engine's connections pass through a guard
// that applies them before net/http reads a byte (guard.go). A request is refused when RFC
// 9112 or 9110 says a server must refuse it, and when an upstream could read it otherwise than
// the gateway did: the upstream must receive exactly the requests the client sent, each framed
// by the gateway's own hand. After a refusal the connection closes, since where the refused
// message ends, or what follows it, is not certain.

// headLimit is the largest request header section accepted.
const headLimit = 16 << 10

// refusal is a request the gateway does not pass on: the status and detail of its answer.
type refusal struct {
	status int
	detail string
}

func (r *refusal) Error() string { return r.detail }

func refuse(status int, format string, args ...any) *refusal {
	return &refusal{status: status, detail: fmt.Sprintf(format, args...)}
}

// parseRefusal is the answer to a head h1 could not parse.
func parseRefusal(err error) *refusal {
	switch {
	case errors.Is(err, h1.ErrTooLarge):
		return refuse(http.StatusRequestHeaderFieldsTooLarge, "the request's header section is over %d KiB", headLimit>>10)
	case errors.Is(err, h1.ErrVersion):
		return refuse(http.StatusHTTPVersionNotSupported, "only HTTP/1.0 and HTTP/1.1 are served")
	case errors.Is(err, h1.ErrTransferEncoding):
		return refuse(http.StatusNotImplemented, "only the chunked transfer coding is accepted on requests")
	case errors.Is(err, h1.ErrAmbiguousLength):
		return refuse(http.StatusBadRequest, "the request's length is ambiguous: send one Content-Length, or one Transfer-Encoding: chunked (on HTTP/1.1), never both")
	}
	return refuse(http.StatusBadRequest, "malformed request: %v", err)
}

// errBadChunks answers a chunked request body that breaks the coding (RFC 9112 §7.1).
var errBadChunks = refuse(http.StatusBadRequest, "malformed chunked request body")

// framingFields frame or route a message: a Connection field may not make them hop-by-hop,
// and no field may be named like them with underscores, which some servers read as dashes.
var framingFields = []string{"Content-Length", "Transfer-Encoding", "Host", "Trailer"}

// checkRequest applies the rules beyond h1's parsing to a request head.
func checkRequest(h *h1.Head) *refusal {
	method := h.Method
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace:
	case http.MethodConnect:
		return refuse(http.StatusMethodNotAllowed, "CONNECT is not served: the gateway is not a forward proxy")
	default:
		// Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET, and no route serves it.
		return refuse(http.StatusNotImplemented, "method %s is not served: use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or TRACE", method)
	}
	if r := checkTarget(method, h.Target); r != nil {
		return r
	}
	hosts, lengths := 0, 0
	for _, f := range h.Fields {
		switch {
		case equalFoldString(f.Name, "Host"):
			hosts++
			if !validHost(f.Value) {
				return refuse(http.StatusBadRequest, "invalid Host %q: a host name or IP address and an optional port", f.Value)
			}
		case equalFoldString(f.Name, "Content-Length"):
			lengths++
		case equalFoldString(f.Name, "Connection"):
			for name := range bytes.SplitSeq(f.Value, []byte(",")) {
				name = bytes.TrimSpace(name)
				if anyEqualFold(name, framingFields) {
					return refuse(http.StatusBadRequest, "the Connection field names %s, which frames or routes the request: it cannot be dropped as hop-by-hop", name)
				}
			}
		case equalFoldString(f.Name, "Expect"):
			if !equalFoldString(f.Value, "100-continue") {
				return refuse(http.StatusExpectationFailed, "only Expect: 100-continue is understood")
			}
		case bytes.IndexByte(f.Name, '_') >= 0 && anyEqualFold(bytes.ReplaceAll(f.Name, []byte("_"), []byte("-")), framingFields):
			return refuse(http.StatusBadRequest, "a field named %s, which servers that read _ as - take for a framing field", f.Name)
		}
	}
	switch {
	case hosts == 0 && h.Minor == 1:
		return refuse(http.StatusBadRequest, "an HTTP/1.1 request needs a Host field")
	case hosts > 1:
		return refuse(http.StatusBadRequest, "more than one Host field")
	case lengths > 1:
		return refuse(http.StatusBadRequest, "more than one Content-Length field")
	case h.Body != h1.NoBody && (string(method) == http.MethodGet || string(method) == http.MethodHead || string(method) == http.MethodTrace):
		// An origin that ignores such a body would read it as the next request (CL.0).
		return refuse(http.StatusBadRequest, "a %s request has no body: send it without Content-Length (or with 0) and without Transfer-Encoding", method)
	}
	return nil
}

// checkTarget accepts the request-target forms a gateway serves (RFC 9112 §3.2): a path, an
// absolute http(s) URL, or * for OPTIONS; never a fragment.
func checkTarget(method, target []byte) *refusal {
	if bytes.IndexByte(target, '#') >= 0 {
		return refuse(http.StatusBadRequest, "a request target has no fragment (#)")
	}
	switch {
	case target[0] == '/':
		return nil
	case string(target) == "*" && string(method) == http.MethodOptions:
		return nil
	}
	lower := bytes.ToLower(target[:min(len(target), len("https://"))])
	rest := target
	switch {
	case bytes.HasPrefix(lower, []byte("http://")):
		rest = target[len("http://"):]
	case bytes.HasPrefix(lower, []byte("https://")):
		rest = target[len("https://"):]
	default:
		return refuse(http.StatusBadRequest, "the request target must be a path (/…), an absolute http(s) URL, or * for OPTIONS")
	}
	authority := rest
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		authority = rest[:i]
	}
	if !validHost(authority) {
		return refuse(http.StatusBadRequest, "invalid authority %q in the request target: a host name or IP address and an optional port", authority)
	}
	return nil
}

// validHost reports whether v is uri-host [ ":" port ] (RFC 9110 §7.2) of the plain kind:
// a name of letters, digits, '-', '.', '_', '~' and percent-encoding, or an IP literal in
// brackets, and digits after a colon. Userinfo, paths, commas and the other sub-delims are
// refused: no client needs them, and upstreams disagree on what they mean.
func validHost(v []byte) bool {
	host, port := v, []byte(nil)
	if len(v) > 0 && v[0] == '[' {
		end := bytes.IndexByte(v, ']')
		if end < 0 {
			return false
		}
		for _, c := range v[1:end] {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		host, port = v[:end+1], v[end+1:]
		if len(port) > 0 && port[0] != ':' {
			return false
		}
	} else if i := bytes.LastIndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i:]
	}
	if len(host) == 0 {
		return false
	}
	if len(port) > 0 {
		for _, c := range port[1:] {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if host[0] == '[' {
		return true
	}
	for _, c := range host {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '%':
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// dotSegments reports whether a decoded path has a "." or ".." segment: an upstream that
// resolves them (RFC 3986 §5.2.4) would serve a path other than the one the route was
// chosen for.
func dotSegments(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// isIdentityField reports whether a request field is, or may be read as, one of the identity
// fields only the gateway sets: compared without case, with _ read as -.
func isIdentityField(name []byte) bool {
	for _, id := range identityHeaders {
		if len(name) != len(id) {
			continue
		}
		same := true
		for i := range name {
			c := name[i]
			if c == '_' {
				c = '-'
			}
			if c|0x20 != id[i]|0x20 {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// allowedUpgrade is the protocol a request that asks to switch (Connection: upgrade and an
// Upgrade field) may switch to on route r: its Upgrade value when the route lists it, else ""
// and the request goes on as plain HTTP/1.1 (RFC 9110 §7.8 lets a server ignore Upgrade).
func allowedUpgrade(r *Route, upgrade []byte) string {
	if r == nil {
		return ""
	}
	for _, p := range r.Upgrades {
		if equalFoldString(upgrade, p) {
			return p
		}
	}
	return ""
}

// hasToken reports whether the comma-separated lists in values name token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func equalFoldString(b []byte, s string) bool {
	return len(b) == len(s) && bytes.EqualFold(b, []byte(s))
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool { return h1.IsToken([]byte(s)) }

// clientLimits bound what one client may hold of the gateway: how long its request head may
// take, how slowly its body may come, and how large the body may be. Both engines apply them.
type clientLimits struct {
	header  time.Duration // REQUEST_HEADER_TIMEOUT: from the head's first byte to its last
	minRate float64       // REQUEST_BODY_MIN_RATE in bytes/s, after a grace as long as header; 0: none
	body    int64         // BODY_LIMIT_BYTES; a route's body_limit_bytes overrides it
}

// bodyBuffer is how much of a body the gateway waits for before it takes an upstream
// connection for the request (all of a smaller body): a client that sends its body slowly
// then holds only its own connection, and the minimum rate ends it before it holds more.
const bodyBuffer = 16 << 10

// bodyLimit is the largest body route r accepts.
func (l clientLimits) bodyLimit(r *Route) int64 {
	if r != nil && r.BodyLimitBytes > 0 {
		return r.BodyLimitBytes
	}
	return l.body
}

// checkLength refuses a declared body over the route's limit, before any of it is read.
func (l clientLimits) checkLength(h *h1.Head, r *Route) *refusal {
	if h.Body == h1.Length && h.Length > l.bodyLimit(r) {
		return l.tooLarge(r)
	}
	return nil
}

func (l clientLimits) tooLarge(r *Route) *refusal {
	return refuse(http.StatusRequestEntityTooLarge, "the request body is over the %d bytes this route accepts", l.bodyLimit(r))
}

// bodyDeadline is when a body that started at start, with read bytes of it in, falls under
// the minimum rate unless more comes: after the grace, it must average minRate.
func (l clientLimits) bodyDeadline(start time.Time, read int64) time.Time {
	if l.minRate <= 0 {
		return time.Time{}
	}
	return start.Add(l.header + time.Duration(float64(read)/l.minRate*float64(time.Second)))
}

func (l clientLimits) headTimeout() *refusal {
	return refuse(http.StatusRequestTimeout, "the request's header section did not come within %s (REQUEST_HEADER_TIMEOUT)", l.header)
}

func (l clientLimits) bodyTimeout() *refusal {
	return refuse(http.StatusRequestTimeout, "the request body came slower than %g bytes/s (REQUEST_BODY_MIN_RATE)", l.minRate)
}
