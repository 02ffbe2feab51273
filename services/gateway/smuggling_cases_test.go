package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// The suite's cases, by family. They come from RFC 9112 (message framing, §2–§7), RFC 9110
// (Host §7.2, Connection §7.6.1, Upgrade §7.8, Expect §10.1.1, trailers §6.5) and the public
// request-smuggling material: the CL.TE / TE.CL / TE.TE families and their obfuscations, the
// request classifications of AWS's http-desync-guardian (the library behind the
// desync-mitigation modes of AWS's load balancers), CL.0 on GET and HEAD, h2c upgrades and
// pipelining. Each refused request is sent twice: alone, and behind a valid request on the same
// connection, which must be answered first and reach the upstream alone.

// smuggled is a request hidden in another's body: it names /internal, which no route serves,
// so the upstream seeing it means it went around the gateway.
const smuggled = "GET /internal/§/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

const (
	ok     = 200
	bad    = 400
	notImp = 501
)

// refused: the gateway answers status and closes; nothing reaches the upstream.
func refused(family, name string, status int, send string) rawCase {
	return rawCase{family: family, name: name, send: send, answers: []int{status}, closed: true}
}

// passes: the gateway answers with the upstream's 200 and the upstream sees want.
func passes(family, name, send string, want ...string) rawCase {
	answers := make([]int, len(want))
	for i := range answers {
		answers[i] = ok
	}
	return rawCase{family: family, name: name, send: send, answers: answers, upstream: want}
}

// withLength is a POST of body with its Content-Length, and the extra header lines given.
func withLength(path, extra, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s", path, extra, tagged(body), body)
}

// tagged is len(body) once § in it is replaced by a case tag (caseTag: always five bytes).
func tagged(body string) int { return len(strings.ReplaceAll(body, "§", "c0000")) }

// chunk codes body as one chunk and the last one.
func chunk(body string) string {
	return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", tagged(body), body)
}

// withChunks is a POST whose header lines (extra) say how the chunked body is coded.
func withChunks(path, extra, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n%s", path, extra, body)
}

func get(path, extra string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", path, extra)
}

func smugglingCases() []rawCase {
	var cases []rawCase
	for _, family := range [][]rawCase{
		connectionFamily(), transferEncodingFamily(), contentLengthFamily(), chunkFamily(),
		hostFamily(), requestLineFamily(), fieldFamily(), pipelineFamily(), upgradeFamily(),
		methodFamily(), responseFamily(), halfCloseFamily(),
	} {
		cases = append(cases, family...)
	}
	// Every refused request once more behind a valid one: answered second, and closed.
	var behind []rawCase
	for _, c := range cases {
		if !c.closed || len(c.upstream) > 0 || len(c.answers) != 1 {
			continue
		}
		b := c
		b.name += " (behind a valid request)"
		b.send = get("/pub/§/first", "") + c.send
		b.answers = append([]int{ok}, c.answers...)
		b.upstream = []string{"GET /pub/§/first"}
		behind = append(behind, b)
	}
	cases = append(cases, behind...)
	return cases
}

// connectionFamily: a Connection field that names a field framing or routing the message.
// Dropping such a field as hop-by-hop (RFC 9110 §7.6.1) changes where the message ends for
// whoever reads it next, so the request is refused.
func connectionFamily() []rawCase {
	const f = "connection"
	forms := []struct{ name, line string }{
		{"alone", "Connection: %s\r\n"},
		{"lower case", "Connection: %[2]s\r\n"},
		{"upper case", "Connection: %[3]s\r\n"},
		{"after keep-alive", "Connection: keep-alive, %s\r\n"},
		{"before keep-alive", "Connection: %s, keep-alive\r\n"},
		{"with close", "Connection: close, %s\r\n"},
		{"in a second field", "Connection: keep-alive\r\nConnection: %s\r\n"},
		{"after an empty element", "Connection: ,%s\r\n"},
		{"with tabs", "Connection:\t%s\t\r\n"},
		{"among others", "Connection: foo , %s ,bar\r\n"},
	}
	line := func(form, name string) string {
		form = strings.ReplaceAll(form, "%s", "%[1]s")
		return fmt.Sprintf(form, name, strings.ToLower(name), strings.ToUpper(name))
	}
	var cases []rawCase
	for _, form := range forms {
		cases = append(cases,
			refused(f, "Content-Length "+form.name, bad, withLength("/pub/§/outer", line(form.line, "Content-Length"), smuggled)),
			refused(f, "Transfer-Encoding "+form.name, bad, withChunks("/pub/§/outer", line(form.line, "Transfer-Encoding")+"Transfer-Encoding: chunked\r\n", chunk(smuggled))),
			refused(f, "Host "+form.name, bad, get("/pub/§/outer", line(form.line, "Host"))),
			refused(f, "Trailer "+form.name, bad, withChunks("/pub/§/outer", line(form.line, "Trailer")+"Trailer: X-T\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
		)
	}
	return append(cases,
		passes(f, "names an ordinary field", withLength("/pub/§/a", "Connection: X-Custom\r\nX-Custom: 1\r\n", smuggled), "POST /pub/§/a"),
		passes(f, "keep-alive", withLength("/pub/§/a", "Connection: keep-alive\r\n", smuggled), "POST /pub/§/a"),
		rawCase{family: f, name: "close", send: get("/pub/§/a", "Connection: close\r\n") + smuggled, answers: []int{ok}, closed: true, upstream: []string{"GET /pub/§/a"}},
	)
}

// transferEncodingFamily: Transfer-Encoding in the forms a front end and a back end may read
// differently (TE.TE), and beside Content-Length (CL.TE, TE.CL).
func transferEncodingFamily() []rawCase {
	const f = "transfer-encoding"
	body := chunk(smuggled)
	var cases []rawCase
	for _, v := range []string{"chunked", "Chunked", "CHUNKED", " chunked", "chunked ", "\tchunked"} {
		cases = append(cases,
			passes(f, fmt.Sprintf("%q", v), withChunks("/pub/§/outer", "Transfer-Encoding:"+v+"\r\n", body), "POST /pub/§/outer"),
			refused(f, fmt.Sprintf("%q with Content-Length", v), bad, withChunks("/pub/§/outer", fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding:%s\r\n", tagged(body), v), body)),
			refused(f, fmt.Sprintf("%q after Content-Length 0", v), bad, withChunks("/pub/§/outer", "Content-Length: 0\r\nTransfer-Encoding:"+v+"\r\n", body)),
			refused(f, fmt.Sprintf("%q on HTTP/1.0", v), bad, strings.Replace(withChunks("/pub/§/outer", "Transfer-Encoding:"+v+"\r\n", body), "HTTP/1.1", "HTTP/1.0", 1)),
		)
	}
	for _, v := range []string{"chunked, chunked", "chunked, identity", "identity", "xchunked", "chunkedx", "chunk", `"chunked"`,
		"chunked;q=1", "", ",", "chunked\x0b", "x, chunked,", "\x00chunked"} {
		cases = append(cases,
			refused(f, fmt.Sprintf("%q", v), bad, withChunks("/pub/§/outer", "Transfer-Encoding: "+v+"\r\n", body)),
			refused(f, fmt.Sprintf("%q with Content-Length", v), bad, withChunks("/pub/§/outer", fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding: %s\r\n", tagged(body), v), body)),
		)
	}
	for _, v := range []string{"gzip, chunked", "identity, chunked", "deflate,chunked"} {
		cases = append(cases, refused(f, fmt.Sprintf("%q", v), notImp, withChunks("/pub/§/outer", "Transfer-Encoding: "+v+"\r\n", body)))
	}
	for _, form := range []struct{ name, lines string }{
		{"space before the colon", "Transfer-Encoding : chunked\r\n"},
		{"tab before the colon", "Transfer-Encoding\t: chunked\r\n"},
		{"folded value", "Transfer-Encoding:\r\n chunked\r\n"},
		{"folded onto another field", "X-Foo: bar\r\n Transfer-Encoding: chunked\r\n"},
		{"underscore", "Transfer_Encoding: chunked\r\n"},
		{"two fields", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"},
		{"chunked then identity", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"},
		{"identity then chunked", "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n"},
		{"bare LF", "Transfer-Encoding: chunked\n"},
		{"bare CR", "Transfer-Encoding: chunked\rX: y\r\n"},
		{"NUL in the name", "Transfer-Encoding\x00: chunked\r\n"},
		{"name with a trailing space and Content-Length", fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding : chunked\r\n", tagged(body))},
	} {
		cases = append(cases, refused(f, form.name, bad, withChunks("/pub/§/outer", form.lines, body)))
	}
	return cases
}

// contentLengthFamily: Content-Length values a reader may take two ways.
func contentLengthFamily() []rawCase {
	const f = "content-length"
	n := tagged(smuggled)
	post := func(lines string) string {
		return "POST /pub/§/outer HTTP/1.1\r\nHost: x\r\n" + lines + "\r\n" + smuggled
	}
	var cases []rawCase
	for _, v := range []string{fmt.Sprintf("+%d", n), fmt.Sprintf("-%d", n), fmt.Sprintf("%d %d", n, n), fmt.Sprintf("%d,%d", n, n),
		fmt.Sprintf("%d, %d", n, n), fmt.Sprintf("0x%x", n), fmt.Sprintf("%d.0", n), "", "99999999999999999999", fmt.Sprintf("%d\x00", n),
		fmt.Sprintf("%de0", n), fmt.Sprintf("\"%d\"", n)} {
		cases = append(cases, refused(f, fmt.Sprintf("%q", v), bad, post("Content-Length: "+v+"\r\n")))
	}
	for _, v := range []string{fmt.Sprintf(" %d", n), fmt.Sprintf("%d ", n), fmt.Sprintf("0%d", n), fmt.Sprintf("\t%d", n)} {
		cases = append(cases, passes(f, fmt.Sprintf("%q", v), post("Content-Length:"+v+"\r\n"), "POST /pub/§/outer"))
	}
	for _, form := range []struct{ name, lines string }{
		{"two equal fields", fmt.Sprintf("Content-Length: %d\r\nContent-Length: %d\r\n", n, n)},
		{"two different fields", fmt.Sprintf("Content-Length: %d\r\nContent-Length: 0\r\n", n)},
		{"0 then the length", fmt.Sprintf("Content-Length: 0\r\nContent-Length: %d\r\n", n)},
		{"space before the colon", fmt.Sprintf("Content-Length : %d\r\n", n)},
		{"underscore", fmt.Sprintf("Content_Length: %d\r\n", n)},
		{"folded value", fmt.Sprintf("Content-Length:\r\n %d\r\n", n)},
		{"bare LF", fmt.Sprintf("Content-Length: %d\n", n)},
	} {
		cases = append(cases, refused(f, form.name, bad, post(form.lines)))
	}
	// A body shorter than what follows: the rest is the next request, which goes through the
	// gateway's routing like any other (404: /internal is routed nowhere).
	return append(cases,
		rawCase{family: f, name: "length 0 then a request", send: post("Content-Length: 0\r\n"), answers: []int{ok, 404}, upstream: []string{"POST /pub/§/outer"}},
		rawCase{family: f, name: "length 5 then a request", send: withLength("/pub/§/outer", "", "hello") + smuggled, answers: []int{ok, 404}, upstream: []string{"POST /pub/§/outer"}},
		passes(f, "the length over the whole request", post(fmt.Sprintf("Content-Length: %d\r\n", n)), "POST /pub/§/outer"),
	)
}

// chunkFamily: the chunked coding's lines, sizes and trailers.
func chunkFamily() []rawCase {
	const f = "chunks"
	var cases []rawCase
	for _, b := range []struct{ name, body string }{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n"},
		{"extension", "5;ext=1\r\nhello\r\n0\r\n\r\n"},
		{"quoted extension", "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"},
		{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n"},
		{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n"},
		{"space after the size", "5 \r\nhello\r\n0\r\n\r\n"},
		{"trailer dropped", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
		{"framing trailer dropped", "5\r\nhello\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"identity trailer dropped", "5\r\nhello\r\n0\r\nX-User-Id: admin\r\n\r\n"},
		{"a request as data", chunk(smuggled)},
		{"empty", "0\r\n\r\n"},
	} {
		cases = append(cases, passes(f, b.name, withChunks("/pub/§/outer", "Transfer-Encoding: chunked\r\n", b.body), "POST /pub/§/outer"))
	}
	for _, b := range []struct{ name, body string }{
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"plus sign", "+5\r\nhello\r\n0\r\n\r\n"},
		{"minus sign", "-5\r\nhello\r\n0\r\n\r\n"},
		{"leading space", " 5\r\nhello\r\n0\r\n\r\n"},
		{"bare LF after the size", "5\nhello\r\n0\r\n\r\n"},
		{"bare CR after the size", "5\rhello\r\n0\r\n\r\n"},
		{"bare LF after an extension", "5;a\nhello\r\n0\r\n\r\n"},
		{"CR in an extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{"space before the extension", "5 ;a\r\nhello\r\n0\r\n\r\n"},
		{"data longer than the size", "3\r\nhello\r\n0\r\n\r\n"},
		{"data shorter than the size", "9\r\nhello\r\n0\r\n\r\n" + smuggled},
		{"no CRLF after the data", "5\r\nhello0\r\n\r\n"},
		{"LF alone after the data", "5\r\nhello\n0\r\n\r\n"},
		{"size over 2^60", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{"empty size line", "\r\nhello\r\n0\r\n\r\n"},
		{"size with an underscore", "0_5\r\nhello\r\n0\r\n\r\n"},
		{"trailer without a colon", "5\r\nhello\r\n0\r\nfoo\r\n\r\n"},
		{"folded trailer", "5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"},
		{"NUL in a trailer", "5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n"},
		{"space before a trailer's colon", "5\r\nhello\r\n0\r\nX : a\r\n\r\n"},
		{"bare LF ending the trailers", "5\r\nhello\r\n0\r\n\n"},
	} {
		// The head may have gone upstream before the body broke: the upstream then sees an
		// aborted request, never a complete one.
		cases = append(cases, refused(f, b.name, bad, withChunks("/pub/§/outer", "Transfer-Encoding: chunked\r\n", b.body)))
	}
	return append(cases,
		rawCase{family: f, name: "a request after the last chunk", send: withChunks("/pub/§/outer", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"+smuggled),
			answers: []int{ok, 404}, upstream: []string{"POST /pub/§/outer"}},
	)
}

// hostFamily: RFC 9112 §3.2: a request without Host (HTTP/1.1), with two, or with an invalid one
// gets 400.
func hostFamily() []rawCase {
	const f = "host"
	req := func(lines string) string { return "GET /pub/§/h HTTP/1.1\r\n" + lines + "\r\n" }
	var cases []rawCase
	for _, form := range []struct{ name, lines string }{
		{"missing", ""},
		{"two equal", "Host: x\r\nHost: x\r\n"},
		{"two different", "Host: x\r\nHost: y\r\n"},
		{"userinfo", "Host: user@x\r\n"},
		{"user and password", "Host: user:pw@x\r\n"},
		{"a path", "Host: x/pub\r\n"},
		{"a comma", "Host: x,y\r\n"},
		{"a space", "Host: x y\r\n"},
		{"a tab", "Host: x\ty\r\n"},
		{"empty", "Host: \r\n"},
		{"a port that is no number", "Host: x:y\r\n"},
		{"a semicolon", "Host: x;y\r\n"},
		{"a query", "Host: x?y\r\n"},
		{"a backslash", "Host: x\\y\r\n"},
		{"an unclosed IPv6 literal", "Host: [::1\r\n"},
		{"space before the colon", "Host : x\r\n"},
	} {
		cases = append(cases, refused(f, form.name, bad, req(form.lines)))
	}
	for _, form := range []struct{ name, lines string }{
		{"name", "Host: shop.example\r\n"},
		{"name and port", "Host: shop.example:8080\r\n"},
		{"IPv4", "Host: 127.0.0.1\r\n"},
		{"IPv6", "Host: [::1]:8080\r\n"},
		{"lower-case field name", "host: x\r\n"},
		{"trailing dot", "Host: shop.example.\r\n"},
		{"IDNA", "Host: xn--bcher-kva.example\r\n"},
	} {
		cases = append(cases, passes(f, form.name, req(form.lines), "GET /pub/§/h"))
	}
	return append(cases,
		rawCase{family: f, name: "HTTP/1.0 without Host", send: "GET /pub/§/h HTTP/1.0\r\n\r\n", answers: []int{ok}, closed: true, upstream: []string{"GET /pub/§/h"}},
		rawCase{family: f, name: "absolute form", send: "GET http://other.example/pub/§/h HTTP/1.1\r\nHost: x\r\n\r\n", answers: []int{ok}, upstream: []string{"GET /pub/§/h"}},
		rawCase{family: f, name: "absolute form, https", send: "GET https://other.example/pub/§/h HTTP/1.1\r\nHost: x\r\n\r\n", answers: []int{ok}, upstream: []string{"GET /pub/§/h"}},
		refused(f, "absolute form without Host", bad, "GET http://other.example/pub/§/h HTTP/1.1\r\n\r\n"),
		refused(f, "absolute form of another scheme", bad, "GET ftp://other.example/pub/§/h HTTP/1.1\r\nHost: x\r\n\r\n"),
		refused(f, "absolute form with userinfo", bad, "GET http://u@other.example/pub/§/h HTTP/1.1\r\nHost: x\r\n\r\n"),
	)
}

// requestLineFamily: the start line's form, version and target.
func requestLineFamily() []rawCase {
	const f = "request-line"
	var cases []rawCase
	for _, l := range []struct {
		name, line string
		status     int
	}{
		{"lower-case version", "GET /pub/§/a http/1.1", bad},
		{"HTTP/1.2", "GET /pub/§/a HTTP/1.2", 505},
		{"HTTP/2.0", "GET /pub/§/a HTTP/2.0", 505},
		{"HTTP/3.0", "GET /pub/§/a HTTP/3.0", 505},
		{"HTTP/1.10", "GET /pub/§/a HTTP/1.10", bad},
		{"HTTP/1", "GET /pub/§/a HTTP/1", bad},
		{"HTTP/1.1 with a trailing space", "GET /pub/§/a HTTP/1.1 ", bad},
		{"two spaces after the method", "GET  /pub/§/a HTTP/1.1", bad},
		{"two spaces before the version", "GET /pub/§/a  HTTP/1.1", bad},
		{"tab separators", "GET\t/pub/§/a\tHTTP/1.1", bad},
		{"no version (HTTP/0.9)", "GET /pub/§/a", bad},
		{"leading space", " GET /pub/§/a HTTP/1.1", bad},
		{"NUL in the target", "GET /pub/§/a\x00 HTTP/1.1", bad},
		{"DEL in the target", "GET /pub/§/a\x7f HTTP/1.1", bad},
		{"raw UTF-8 in the target", "GET /pub/§/\xc3\xa9 HTTP/1.1", bad},
		{"a fragment", "GET /pub/§/a#b HTTP/1.1", bad},
		{"a method that is no token", "G(T /pub/§/a HTTP/1.1", bad},
		{"asterisk form with GET", "GET * HTTP/1.1", bad},
		{"authority form with GET", "GET x:80 HTTP/1.1", bad},
		{"a relative target", "GET pub/§/a HTTP/1.1", bad},
		{"dot segments", "GET /pub/§/../../internal/§/x HTTP/1.1", bad},
		{"encoded dot segments", "GET /pub/§/%2e%2e/%2E%2E/internal/§/x HTTP/1.1", bad},
		{"a dot segment", "GET /pub/§/./a HTTP/1.1", bad},
		{"an encoded slash and dot segments", "GET /pub%2f..%2finternal/§/x HTTP/1.1", bad},
		{"CONNECT", "CONNECT x:443 HTTP/1.1", 405},
		{"CONNECT to a path", "CONNECT /pub/§/a HTTP/1.1", 405},
	} {
		cases = append(cases, refused(f, l.name, l.status, l.line+"\r\nHost: x\r\n\r\n"))
	}
	return append(cases,
		refused(f, "an empty line first", bad, "\r\n"+get("/pub/§/a", "")),
		refused(f, "bare LF line ends", bad, "GET /pub/§/a HTTP/1.1\nHost: x\n\n"),
		refused(f, "a lower-case method", notImp, "get /pub/§/a HTTP/1.1\r\nHost: x\r\n\r\n"),
		refused(f, "an unknown method", notImp, "FOO /pub/§/a HTTP/1.1\r\nHost: x\r\n\r\n"),
		refused(f, "PRI, HTTP/2's preface", 505, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		passes(f, "a query", get("/pub/§/a?b=c&d", ""), "GET /pub/§/a?b=c&d"),
		passes(f, "percent-encoding", get("/pub/§/a%20b", ""), "GET /pub/§/a%20b"),
		passes(f, "an encoded letter", get("/p%75b/§/a", ""), "GET /pub/§/a"),
		rawCase{family: f, name: "OPTIONS *", send: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", answers: []int{ok}},
	)
}

// fieldFamily: header field syntax, the size of the header section, and the identity fields
// only the gateway may set.
func fieldFamily() []rawCase {
	const f = "fields"
	var cases []rawCase
	for _, l := range []struct{ name, lines string }{
		{"space before the colon", "X : a\r\n"},
		{"tab before the colon", "X\t: a\r\n"},
		{"leading space on the first field", " X: a\r\n"},
		{"folded value", "X: a\r\n b\r\n"},
		{"bare CR in a value", "X: a\rb\r\n"},
		{"NUL in a value", "X: a\x00b\r\n"},
		{"bare LF between fields", "X: a\nY: b\r\n"},
		{"no colon", "X\r\n"},
		{"empty name", ": a\r\n"},
		{"a name that is no token", "X(: a\r\n"},
		{"DEL in a value", "X: a\x7fb\r\n"},
	} {
		cases = append(cases, refused(f, l.name, bad, get("/pub/§/a", l.lines)))
	}
	return append(cases,
		refused(f, "a header section over 16 KiB", 431, get("/pub/§/a", "X: "+strings.Repeat("a", 17<<10)+"\r\n")),
		refused(f, "many fields over 16 KiB", 431, get("/pub/§/a", strings.Repeat("X-Many: 0123456789abcdef0123456789abcdef\r\n", 500))),
		passes(f, "obs-text in a value", get("/pub/§/a", "X: caf\xe9\r\n"), "GET /pub/§/a"),
		passes(f, "empty value", get("/pub/§/a", "X:\r\n"), "GET /pub/§/a"),
		passes(f, "forged identity", get("/pub/§/a", "X-User-Id: admin\r\nX-User-Roles: admin\r\n"), "GET /pub/§/a"),
		passes(f, "forged identity, lower case", get("/pub/§/a", "x-user-id: admin\r\nx-user-roles: admin\r\n"), "GET /pub/§/a"),
		passes(f, "forged identity, underscores", get("/pub/§/a", "X_User_Id: admin\r\nX_User_Roles: admin\r\n"), "GET /pub/§/a"),
		passes(f, "forged identity, twice", get("/pub/§/a", "X-User-Id: a\r\nX-User-Id: b\r\n"), "GET /pub/§/a"),
		refused(f, "Expect other than 100-continue", 417, withLength("/pub/§/a", "Expect: 200-ok\r\n", "hello")),
		passes(f, "Expect 100-continue", withLength("/pub/§/a", "Expect: 100-continue\r\n", "hello"), "POST /pub/§/a"),
	)
}

// pipelineFamily: requests sent back to back on one connection.
func pipelineFamily() []rawCase {
	const f = "pipelining"
	return []rawCase{
		passes(f, "three GETs", get("/pub/§/1", "")+get("/pub/§/2", "")+get("/pub/§/3", ""), "GET /pub/§/1", "GET /pub/§/2", "GET /pub/§/3"),
		passes(f, "POST with a length, then GET", withLength("/pub/§/1", "", "hello")+get("/pub/§/2", ""), "POST /pub/§/1", "GET /pub/§/2"),
		passes(f, "chunked POST, then GET", withChunks("/pub/§/1", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")+get("/pub/§/2", ""), "POST /pub/§/1", "GET /pub/§/2"),
		{family: f, name: "nothing after Connection: close", send: get("/pub/§/1", "") + get("/pub/§/2", "Connection: close\r\n") + get("/pub/§/3", ""),
			answers: []int{ok, ok}, closed: true, upstream: []string{"GET /pub/§/1", "GET /pub/§/2"}},
		{family: f, name: "an unrouted request between two", send: get("/pub/§/1", "") + smuggled + get("/pub/§/3", ""),
			answers: []int{ok, 404, ok}, upstream: []string{"GET /pub/§/1", "GET /pub/§/3"}},
		{family: f, name: "a request without a token between two", send: get("/pub/§/1", "") + get("/priv/§/2", "") + get("/pub/§/3", ""),
			answers: []int{ok, 401, ok}, upstream: []string{"GET /pub/§/1", "GET /pub/§/3"}},
		{family: f, name: "HTTP/1.0 after HTTP/1.1", send: get("/pub/§/1", "") + "GET /pub/§/2 HTTP/1.0\r\n\r\n" + get("/pub/§/3", ""),
			answers: []int{ok, ok}, closed: true, upstream: []string{"GET /pub/§/1", "GET /pub/§/2"}},
		{family: f, name: "HTTP/1.0 keep-alive", send: "GET /pub/§/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/pub/§/2", ""),
			answers: []int{ok, ok}, upstream: []string{"GET /pub/§/1", "GET /pub/§/2"}},
		passes(f, "HTTP/1.0 with a body", "POST /pub/§/1 HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"+get("/pub/§/2", ""), "POST /pub/§/1", "GET /pub/§/2"),
	}
}

// upgradeFamily: protocol switches. Only a route's listed protocols are passed on; h2c never
// is (a tunnel the gateway no longer reads).
func upgradeFamily() []rawCase {
	const f = "upgrade"
	h2c := func(path, conn, proto string) string {
		return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: %s\r\nUpgrade: %s\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", path, conn, proto)
	}
	var cases []rawCase
	for _, route := range []string{"pub", "ws"} {
		for _, v := range []struct{ conn, proto string }{
			{"Upgrade, HTTP2-Settings", "h2c"},
			{"upgrade, http2-settings", "h2c"},
			{"Upgrade", "H2C"},
			{"Upgrade, HTTP2-Settings", "h2c, websocket"},
		} {
			cases = append(cases, rawCase{family: f, name: fmt.Sprintf("%s on /%s, %s", v.proto, route, v.conn),
				send:    h2c("/"+route+"/§/h2c", v.conn, v.proto) + smuggled,
				answers: []int{ok, 404}, upstream: []string{"GET /" + route + "/§/h2c"}})
		}
	}
	ws := func(path, conn string) string {
		return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: %s\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, conn)
	}
	return append(cases,
		rawCase{family: f, name: "websocket where the route allows it", send: ws("/ws/§/a", "Upgrade"),
			answers: []int{101}, tunnel: "ping", upstream: []string{"GET /ws/§/a"}},
		rawCase{family: f, name: "websocket where the route does not allow it", send: ws("/pub/§/a", "Upgrade") + smuggled,
			answers: []int{ok, 404}, upstream: []string{"GET /pub/§/a"}},
		rawCase{family: f, name: "Upgrade without Connection: upgrade", send: ws("/ws/§/a", "keep-alive") + smuggled,
			answers: []int{ok, 404}, upstream: []string{"GET /ws/§/a"}},
		rawCase{family: f, name: "an unlisted protocol", send: strings.Replace(ws("/ws/§/a", "Upgrade"), "websocket", "foo", 1) + smuggled,
			answers: []int{ok, 404}, upstream: []string{"GET /ws/§/a"}},
	)
}

// methodFamily: bodies on methods that have none (CL.0: an origin that ignores them reads the
// body as the next request).
func methodFamily() []rawCase {
	const f = "methods"
	n := tagged(smuggled)
	var cases []rawCase
	for _, m := range []string{"GET", "HEAD", "TRACE"} {
		cases = append(cases,
			refused(f, m+" with a length", bad, fmt.Sprintf("%s /pub/§/a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", m, n, smuggled)),
			refused(f, m+" chunked", bad, fmt.Sprintf("%s /pub/§/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s", m, chunk(smuggled))),
		)
	}
	return append(cases,
		passes(f, "GET with Content-Length 0", get("/pub/§/a", "Content-Length: 0\r\n"), "GET /pub/§/a"),
		passes(f, "DELETE with a body", strings.Replace(withLength("/pub/§/a", "", smuggled), "POST", "DELETE", 1), "DELETE /pub/§/a"),
		passes(f, "OPTIONS with a body", strings.Replace(withLength("/pub/§/a", "", smuggled), "POST", "OPTIONS", 1), "OPTIONS /pub/§/a"),
		passes(f, "PUT chunked", strings.Replace(withChunks("/pub/§/a", "Transfer-Encoding: chunked\r\n", chunk(smuggled)), "POST", "PUT", 1), "PUT /pub/§/a"),
	)
}

// responseFamily: an upstream that answers more than it was asked. Its connection must not
// be used again: the next request would get the extra answer (checked by the next cases'
// X-Saw).
func responseFamily() []rawCase {
	const f = "responses"
	var cases []rawCase
	for i := 0; i < 3; i++ {
		cases = append(cases,
			passes(f, fmt.Sprintf("two answers to one request, %d", i), get("/pub/§/double", ""), "GET /pub/§/double"),
			passes(f, fmt.Sprintf("the request after, %d", i), get("/pub/§/after", ""), "GET /pub/§/after"),
			passes(f, fmt.Sprintf("a POST after, %d", i), withLength("/pub/§/after", "", "hello"), "POST /pub/§/after"),
		)
	}
	return cases
}

// halfCloseFamily: a client that closes its side of the connection inside a request gets no
// answer (there is nobody to give a refusal to, and never an implicit 200), and the upstream
// sees no complete request for it. (A whole request sent before the close is answered by the
// event loops and abandoned by net/http, which takes the close for the client leaving, as
// nginx does by default: the engines differ there, so it is not a case of this suite.)
func halfCloseFamily() []rawCase {
	const f = "half-close"
	return []rawCase{
		{family: f, name: "a body shorter than its length", send: withLength("/pub/§/a", "", strings.Repeat("x", 100))[:80], closed: true, halfClose: true},
		{family: f, name: "a chunked body cut short", send: withChunks("/pub/§/a", "Transfer-Encoding: chunked\r\n", "5\r\nhe"), closed: true, halfClose: true},
		{family: f, name: "a head cut short", send: "POST /pub/§/a HTTP/1.1\r\nHost: x\r\nContent-Len", closed: true, halfClose: true},
		{family: f, name: "a request line cut short", send: "POST /pub/§/a HT", closed: true, halfClose: true},
	}
}

// TestSmugglingCasesAreWellFormed checks the table itself, so that a case cannot pass for the
// wrong reason: names are unique, a refusal expects nothing upstream, and the bytes of a case
// whose requests must reach the upstream frame, read strictly, as at least that many whole
// requests (a Content-Length computed for the wrong tag width would not).
func TestSmugglingCasesAreWellFormed(t *testing.T) {
	names := map[string]bool{}
	for i, c := range smugglingCases() {
		name := c.family + "/" + c.name
		if names[name] {
			t.Errorf("%s: two cases of that name", name)
		}
		names[name] = true
		if len(c.answers) == 0 && !c.halfClose {
			t.Errorf("%s: no answer expected of a client that stays", name)
		}
		if len(c.answers) == 1 && c.answers[0] >= 400 && c.closed && len(c.upstream) > 0 {
			t.Errorf("%s: a refusal that expects %v upstream", name, c.upstream)
		}
		if len(c.upstream) == 0 || c.tunnel != "" {
			continue
		}
		send := strings.ReplaceAll(c.send, "§", caseTag(i))
		if strings.HasPrefix(send, "GET http") || strings.Contains(send, " HTTP/1.0\r\n") {
			continue // absolute form and HTTP/1.0 are h1's to refuse only as targets of the loop
		}
		if n, err := strictCount([]byte(send)); n < len(c.upstream) {
			t.Errorf("%s: its bytes frame as %d whole requests (%v), fewer than the %d it expects upstream", name, n, err, len(c.upstream))
		}
	}
}
