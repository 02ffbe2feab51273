package gateway

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/web"
)

// errorAnswer is how the engines that answer outside echo answer err, as the net/http
// engine's error handler does: the status, the problem's detail, and for a 401 the
// WWW-Authenticate challenge (RFC 6750 §3).
func errorAnswer(err error) (status int, detail, challenge string) {
	status = web.StatusOf(err)
	detail = err.Error()
	var he *echo.HTTPError
	var fe *fault.Error
	switch {
	case errors.As(err, &he):
		detail = fmt.Sprint(he.Message)
	case errors.As(err, &fe):
		detail = fe.Message
	}
	if status == http.StatusUnauthorized {
		challenge = fmt.Sprintf(`Bearer realm="shopmesh", error="invalid_token", error_description=%q`, detail)
	}
	return status, detail, challenge
}

// appendForwardedFor appends the X-Forwarded-For value the gateway sends upstream: the chain it
// received followed by the peer's address when the peer is one of the trusted proxies, else the
// peer's address alone (what an untrusted client says of its own hops is not passed on).
func appendForwardedFor(b []byte, peer netip.Addr, inbound []byte, trusted []netip.Prefix) []byte {
	if len(inbound) > 0 && isTrusted(peer, trusted) {
		b = append(append(b, inbound...), ", "...)
	}
	return peer.AppendTo(b)
}

// realClientIP is remote, or, when remote is one of the trusted proxies, the last address of
// X-Forwarded-For that is not: each trusted proxy appended the address it saw, and anything
// before the first untrusted hop is the client's to invent.
func realClientIP(remote netip.Addr, xff []byte, trusted []netip.Prefix) netip.Addr {
	if !isTrusted(remote, trusted) {
		return remote
	}
	for len(xff) > 0 {
		part := xff
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			part, xff = xff[i+1:], xff[:i]
		} else {
			xff = nil
		}
		a, err := netip.ParseAddr(string(bytes.TrimSpace(part)))
		if err != nil {
			break
		}
		if !isTrusted(a, trusted) {
			return a.Unmap()
		}
	}
	return remote
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hopByHop are the fields of one connection, never passed on (RFC 9110 §7.6.1), with those
// the Connection field names. The framing fields are the gateway's to write anew.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

func anyEqualFold(k []byte, names []string) bool {
	for _, n := range names {
		if len(n) == len(k) && bytes.EqualFold(k, []byte(n)) {
			return true
		}
	}
	return false
}

// methodName is the request's method as a string that may be kept (metric labels keep it):
// a constant for the standard methods, a copy otherwise.
func methodName(m []byte) string {
	for _, known := range standardMethods {
		if string(m) == known { // no allocation: the compiler compares in place
			return known
		}
	}
	return string(m)
}

var standardMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch, http.MethodOptions}

// appendProblem appends a problem's JSON: the fields of web.Problem the gateway uses, in its
// order, empty ones left out as its omitempty tags do.
func appendProblem(b []byte, status int, detail, instance, requestID string) []byte {
	return appendProblemTail(appendProblemHead(b, status, detail), instance, requestID)
}

// appendProblemHead appends a problem's JSON up to its detail: the part a rate limit's 429s
// share, made once per policy.
func appendProblemHead(b []byte, status int, detail string) []byte {
	b = append(b, `{"type":"about:blank","title":`...)
	b = appendJSONString(b, http.StatusText(status))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if detail != "" {
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, detail)
	}
	return b
}

// appendProblemTail appends the rest of a problem's JSON after appendProblemHead.
func appendProblemTail(b []byte, instance, requestID string) []byte {
	for _, f := range [...]struct{ key, value string }{{"instance", instance}, {"request_id", requestID}} {
		if f.value != "" {
			b = append(b, ',', '"')
			b = append(b, f.key...)
			b = append(b, '"', ':')
			b = appendJSONString(b, f.value)
		}
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// newRequestID is 32 random alphanumerics, as echo's RequestID middleware makes them. An id
// correlates log lines; it guards nothing, so the runtime's fast generator does.
func newRequestID() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [32]byte
	for i := 0; i < len(b); i += 8 {
		r := mrand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = letters[r%uint64(len(letters))]
			r >>= 8
		}
	}
	return string(b[:])
}
