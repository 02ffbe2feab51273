// Command fastplain is make bench-gateway's yardstick for fasthttp: a bare proxy, a
// fasthttp.Server in front of one HostClient and nothing else, to tell what fasthttp itself
// costs on this machine from what the gateway's fasthttp engine adds. With -reject it answers
// every request 429 itself: the most rejections per second fasthttp can answer here.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9009", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:9001", "upstream host:port")
	reject := flag.Bool("reject", false, "answer every request 429, without the upstream")
	flag.Parse()
	client := &fasthttp.HostClient{Addr: *upstream, MaxConns: 4096}
	handler := func(ctx *fasthttp.RequestCtx) {
		if *reject {
			ctx.Response.Header.Set("Retry-After", "1")
			ctx.Error(`{"status":429}`, fasthttp.StatusTooManyRequests)
			return
		}
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	log.Fatal((&fasthttp.Server{Handler: handler}).ListenAndServe(*addr))
}
