package h1

import (
	"errors"
	"strconv"
)

// ErrChunk is a chunked body that does not follow RFC 9112 §7.1.
var ErrChunk = errors.New("malformed chunked body")

// Chunks finds where a chunked body ends as its bytes arrive, so that a proxy can pass the
// body on as it came, coding and all, without holding it. The zero value is ready for a body's
// first byte.
type Chunks struct {
	Data    int64 // bytes of chunk data so far: the body's length once decoded
	state   chunkState
	size    int64 // bytes of the current chunk's data still to come
	digits  int   // hex digits of the current size line
	lineLen int   // bytes of the current chunk extension or trailer line
	colon   bool  // the current trailer line has had its name and colon
}

type chunkState uint8

const (
	chunkSize    chunkState = iota // hex digits
	chunkSizeWS                    // whitespace after the digits, up to CR
	chunkExt                       // ;extension up to CR
	chunkSizeLF                    // LF after the size line
	chunkData                      // size bytes
	chunkDataCR                    // CR after the data
	chunkDataLF                    // LF after the data
	trailerStart                   // the start of a trailer line, or the final CRLF
	trailerLine                    // a trailer field up to CR
	trailerLF                      // LF after a trailer line
	finalLF                        // LF of the final CRLF
	chunksDone
)

// maxChunkLine bounds a size line's extensions and each trailer line.
const maxChunkLine = 4096

// Scan reads b, the next bytes of the body, and returns how many of them belong to it: all of
// b, or fewer when the body ended inside b (done). Bytes after the end belong to the next
// message.
func (c *Chunks) Scan(b []byte) (n int, done bool, err error) {
	_, n, done, err = c.scan(nil, b, false)
	return n, done, err
}

// Reframe is Scan that also appends to dst the body as the chunked coding's plainest form
// says it: each chunk's size in hex without leading zeros, no extensions, no trailer fields,
// the last chunk and the final CRLF. What a proxy passes on is then framed by its own hand:
// nothing of the client's size lines, extensions or trailers reaches the next reader.
func (c *Chunks) Reframe(dst, b []byte) ([]byte, int, bool, error) {
	return c.scan(dst, b, true)
}

func (c *Chunks) scan(dst, b []byte, out bool) ([]byte, int, bool, error) {
	n := 0
	for n < len(b) {
		ch := b[n]
		switch c.state {
		case chunkSize:
			switch v := unhex(ch); {
			case v >= 0:
				if c.digits == 15 { // 2^60 bytes: more than anyone sends
					return dst, n, false, ErrChunk
				}
				c.size, c.digits = c.size<<4|int64(v), c.digits+1
			case c.digits == 0:
				return dst, n, false, ErrChunk
			case ch == ';':
				c.state, c.lineLen = chunkExt, 0
			case ch == ' ' || ch == '\t':
				c.state = chunkSizeWS
			case ch == '\r':
				c.state = chunkSizeLF
			default:
				return dst, n, false, ErrChunk
			}
		case chunkSizeWS:
			// Whitespace may end a size line. RFC 9112 §7.1.1 also allows it before an
			// extension's ';', but net/http refuses that: so does h1, as it must not accept a
			// body its upstreams would read otherwise.
			switch ch {
			case ' ', '\t':
			case '\r':
				c.state = chunkSizeLF
			default:
				return dst, n, false, ErrChunk
			}
		case chunkExt:
			switch {
			case ch == '\r':
				c.state = chunkSizeLF
			case ch == '\n' || ch == 0 || ch == 0x7f:
				return dst, n, false, ErrChunk
			default:
				if c.lineLen++; c.lineLen > maxChunkLine {
					return dst, n, false, ErrChunk
				}
			}
		case chunkSizeLF:
			if ch != '\n' {
				return dst, n, false, ErrChunk
			}
			c.digits = 0
			if c.size == 0 {
				c.state = trailerStart
			} else {
				c.state = chunkData
				if out {
					dst = strconv.AppendInt(dst, c.size, 16)
					dst = append(dst, '\r', '\n')
				}
			}
		case chunkData:
			take := min(int64(len(b)-n), c.size)
			if out {
				dst = append(dst, b[n:n+int(take)]...)
			}
			c.size -= take
			c.Data += take
			n += int(take)
			if c.size == 0 {
				c.state = chunkDataCR
			}
			continue
		case chunkDataCR:
			if ch != '\r' {
				return dst, n, false, ErrChunk
			}
			c.state = chunkDataLF
		case chunkDataLF:
			if ch != '\n' {
				return dst, n, false, ErrChunk
			}
			c.state = chunkSize
			if out {
				dst = append(dst, '\r', '\n')
			}
		case trailerStart:
			switch {
			case ch == '\r':
				c.state = finalLF
			case ch < 0x80 && tokenChars[ch]: // a trailer field's name
				c.state, c.lineLen, c.colon = trailerLine, 1, false
			default:
				return dst, n, false, ErrChunk
			}
		case trailerLine:
			switch {
			case ch == '\r' && c.colon:
				c.state = trailerLF
			case !c.colon && ch == ':':
				c.colon = true
			case !c.colon && (ch >= 0x80 || !tokenChars[ch]):
				return dst, n, false, ErrChunk // a trailer line is a field: name, colon, value
			case ch < ' ' && ch != '\t' || ch == 0x7f:
				return dst, n, false, ErrChunk // control characters, as in header values (net/http refuses them too)
			}
			if c.lineLen++; c.lineLen > maxChunkLine {
				return dst, n, false, ErrChunk
			}
		case trailerLF:
			if ch != '\n' {
				return dst, n, false, ErrChunk
			}
			c.state = trailerStart
		case finalLF:
			if ch != '\n' {
				return dst, n, false, ErrChunk
			}
			c.state = chunksDone
			if out {
				dst = append(dst, "0\r\n\r\n"...)
			}
			return dst, n + 1, true, nil
		case chunksDone:
			return dst, n, true, nil
		}
		n++
	}
	return dst, n, c.state == chunksDone, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
