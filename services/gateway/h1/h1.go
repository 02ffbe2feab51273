// Package h1 frames HTTP/1.1 messages held in byte buffers, for a data plane that reads
// sockets itself rather than through net/http: where a message's header section ends, what
// its fields are, and how its body is delimited (RFC 9112 §6). It copies nothing and allocates
// nothing: a Head's slices point into the buffer it was parsed from.
//
// It is stricter than RFC 9112 requires wherever a lenient reading lets two parties disagree
// on where a message ends (request smuggling): bare LF line ends, obsolete line folding,
// whitespace before a field's colon, Content-Length beside Transfer-Encoding, differing
// Content-Length values and transfer codings other than chunked are all refused.
package h1

import (
	"bytes"
	"errors"
)

// Body says how a message's body is delimited.
type Body uint8

const (
	NoBody     Body = iota // no body at all
	Length                 // Head.Length bytes
	Chunked                // the chunked transfer coding: find its end with a Chunks
	UntilClose             // a response whose body ends when the connection closes
	Tunnel                 // 101 or a 2xx to CONNECT: the connection is no longer HTTP
)

func (b Body) String() string {
	return [...]string{"none", "length", "chunked", "until-close", "tunnel"}[b]
}

// Field is a header field; Value has no leading or trailing whitespace.
type Field struct{ Name, Value []byte }

// Head is a message's start line and header section.
type Head struct {
	Method, Target []byte // requests
	Status         int    // responses
	Minor          int    // HTTP/1.Minor
	Fields         []Field
	Body           Body
	Length         int64 // when Body is Length
	Close          bool  // the connection closes after this message
	Expect100      bool  // a request that waits for 100 Continue before sending its body
	Upgrade        bool  // Connection: upgrade with an Upgrade field
	Size           int   // bytes of the start line and header section, the blank line included
}

// Errors, each meaning the message cannot be passed on: 400 for a request, 502 for a response.
var (
	ErrMalformed        = errors.New("malformed HTTP/1.1 message")
	ErrTooLarge         = errors.New("header section too large")
	ErrVersion          = errors.New("unsupported HTTP version")
	ErrAmbiguousLength  = errors.New("conflicting Content-Length or Transfer-Encoding")
	ErrTransferEncoding = errors.New("unsupported transfer coding: only chunked is accepted")
)

// ParseRequest parses the request head at the start of b into h, reusing h.Fields' array.
// It returns false with no error while b holds no whole header section yet, and ErrTooLarge
// once the section would be longer than limit bytes.
func ParseRequest(b []byte, limit int, h *Head) (bool, error) {
	end, err := headEnd(b, limit)
	if end < 0 || err != nil {
		return false, err
	}
	*h = Head{Fields: h.Fields[:0], Size: end}
	line, rest := cutLine(b[:end])
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 == sp1 || !isToken(line[:sp1]) {
		return false, ErrMalformed
	}
	h.Method, h.Target = line[:sp1], line[sp1+1:sp2]
	if !isTarget(h.Target) {
		return false, ErrMalformed
	}
	if h.Minor, err = version(line[sp2+1:]); err != nil {
		return false, err
	}
	if err := h.parseFields(rest); err != nil {
		return false, err
	}
	return true, h.frameRequest()
}

// ParseResponse parses the response head at the start of b, the answer to a request with the
// given method.
func ParseResponse(b []byte, limit int, method []byte, h *Head) (bool, error) {
	end, err := headEnd(b, limit)
	if end < 0 || err != nil {
		return false, err
	}
	*h = Head{Fields: h.Fields[:0], Size: end}
	line, rest := cutLine(b[:end])
	// HTTP/1.1 200 OK: the reason phrase may be empty or absent.
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return false, ErrMalformed
	}
	if h.Minor, err = version(line[:8]); err != nil {
		return false, err
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return false, ErrMalformed
		}
		h.Status = h.Status*10 + int(c-'0')
	}
	if h.Status < 100 {
		return false, ErrMalformed
	}
	if err := h.parseFields(rest); err != nil {
		return false, err
	}
	return true, h.frameResponse(method)
}

// headEnd is the length of the header section at the start of b, CRLF CRLF included, or -1
// while it has not all arrived.
func headEnd(b []byte, limit int) (int, error) {
	i := bytes.Index(b, crlfcrlf)
	scan := b
	if i >= 0 {
		scan = b[:i+4]
	}
	if bareLF(scan) {
		return -1, ErrMalformed // a line ended by LF alone: refused rather than guessed at
	}
	switch {
	case i >= 0 && i+4 <= limit:
		return i + 4, nil
	case i >= 0 || len(b) >= limit:
		return -1, ErrTooLarge
	}
	return -1, nil
}

// bareLF reports whether a LF in b has no CR before it.
func bareLF(b []byte) bool {
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return false
		}
		if off+i == 0 || b[off+i-1] != '\r' {
			return true
		}
		off += i + 1
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// cutLine splits the first CRLF-ended line off b.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, []byte("\r\n"))
	return b[:i], b[i+2:]
}

// version reads HTTP-version (RFC 9112 §2.3: "HTTP/" DIGIT "." DIGIT): ErrVersion for one
// well formed but other than 1.0 and 1.1, ErrMalformed for anything else ("HTTP/1", "HTTP/1.10").
func version(v []byte) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, ErrMalformed
	}
	switch {
	case v[5] != '1' || v[7] > '1':
		return 0, ErrVersion
	case v[7] == '0':
		return 0, nil
	}
	return 1, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseFields reads the header fields of b, the section after the start line (its last line
// is the empty one), and notes those that frame the message.
func (h *Head) parseFields(b []byte) error {
	for len(b) > 2 {
		line, rest := cutLine(b)
		b = rest
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) { // also refuses obs-fold and space before ':'
			return ErrMalformed
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return ErrMalformed
			}
		}
		h.Fields = append(h.Fields, Field{Name: line[:colon], Value: value})
	}
	return nil
}

// Get is the value of the first field named name (compared without case), or nil.
func (h *Head) Get(name string) []byte {
	for _, f := range h.Fields {
		if equalFold(f.Name, name) {
			return f.Value
		}
	}
	return nil
}

// framing is what a message's fields say about its body and its connection.
type framing struct {
	length         int64
	hasLength      bool
	chunked        bool
	otherCoding    bool
	emptyCoding    bool // an empty element in a Transfer-Encoding list
	hasTE          bool
	teFields       int
	close, keep    bool
	upgradeToken   bool
	upgradeField   bool
	expectContinue bool
}

func (h *Head) framing() (framing, error) {
	var f framing
	for _, fd := range h.Fields {
		switch {
		case equalFold(fd.Name, "Content-Length"):
			// One value per field; repeated fields must agree. A list ("5, 5"), which RFC 9110
			// §8.6 lets a recipient accept, is refused: net/http refuses it too, and a proxy
			// must not read a length its upstream reads otherwise.
			n, ok := parseLength(fd.Value)
			if !ok || (f.hasLength && n != f.length) {
				return f, ErrAmbiguousLength
			}
			f.length, f.hasLength = n, true
		case equalFold(fd.Name, "Transfer-Encoding"):
			f.hasTE = true
			f.teFields++
			for v := range bytes.SplitSeq(fd.Value, []byte(",")) {
				v = trimOWS(v)
				switch {
				case len(v) == 0:
					f.emptyCoding = true
				case f.chunked:
					return f, ErrAmbiguousLength // chunked must be the last coding, and only once
				case equalFold(v, "chunked"):
					f.chunked = true
				default:
					f.otherCoding = true
				}
			}
		case equalFold(fd.Name, "Connection"):
			for v := range bytes.SplitSeq(fd.Value, []byte(",")) {
				switch v = trimOWS(v); {
				case equalFold(v, "close"):
					f.close = true
				case equalFold(v, "keep-alive"):
					f.keep = true
				case equalFold(v, "upgrade"):
					f.upgradeToken = true
				}
			}
		case equalFold(fd.Name, "Upgrade"):
			f.upgradeField = true
		case equalFold(fd.Name, "Expect"):
			f.expectContinue = equalFold(fd.Value, "100-continue")
		}
	}
	h.Close = f.close || (h.Minor == 0 && !f.keep)
	h.Upgrade = f.upgradeToken && f.upgradeField
	return f, nil
}

// frameRequest applies RFC 9112 §6.3 to a request: a Transfer-Encoding of chunked, else a
// Content-Length, else no body. Transfer-Encoding must be one field whose value is chunked
// alone, as net/http and nginx accept it: a list that does not end in chunked, a repeated
// field or an empty element cannot be framed (400); codings before chunked are not
// implemented (ErrTransferEncoding: 501).
func (h *Head) frameRequest() error {
	f, err := h.framing()
	if err != nil {
		return err
	}
	switch {
	case f.hasTE && (f.hasLength || h.Minor == 0 || !f.chunked || f.teFields > 1 || f.emptyCoding):
		return ErrAmbiguousLength
	case f.otherCoding:
		return ErrTransferEncoding
	case f.chunked:
		h.Body = Chunked
	case f.hasLength && f.length > 0:
		h.Body, h.Length = Length, f.length
	}
	h.Expect100 = f.expectContinue && h.Minor == 1 && h.Body != NoBody
	return nil
}

// frameResponse applies RFC 9112 §6.3 to a response to a request with the given method.
func (h *Head) frameResponse(method []byte) error {
	f, err := h.framing()
	if err != nil {
		return err
	}
	// The framing fields are judged even where no body follows: net/http refuses a coding it
	// does not know on any response, and a client must not get what it refuses.
	switch {
	case h.Status == 101 || (h.Status/100 == 2 && string(method) == "CONNECT"):
		h.Body = Tunnel
		return nil
	case f.hasTE && (f.hasLength || h.Minor == 0):
		// RFC 9112 §6.1: Transfer-Encoding on HTTP/1.0 means faulty framing (net/http reads
		// such a body to the close; a chunked reader would stop elsewhere).
		return ErrAmbiguousLength
	case f.hasTE && (f.otherCoding || !f.chunked):
		return ErrTransferEncoding
	case string(method) == "HEAD" || h.Status/100 == 1 || h.Status == 204 || h.Status == 304:
		return nil // no body, whatever the fields say
	case f.hasTE:
		h.Body = Chunked
	case f.hasLength:
		if f.length > 0 {
			h.Body, h.Length = Length, f.length
		}
	default:
		h.Body, h.Close = UntilClose, true
	}
	return nil
}

// parseLength reads a Content-Length value: digits only, no sign, no overflow.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares ASCII without case; enough for field names and tokens.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// IsToken reports whether b is an RFC 9110 token: a field name, a method, a protocol name.
func IsToken(b []byte) bool { return isToken(b) }

// isToken reports whether b is an RFC 9110 token: a field name or a method.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isTarget reports whether b can be a request-target: visible ASCII, at least one byte.
func isTarget(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
