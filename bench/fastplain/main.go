// Command fastplain is make bench-gateway's yardstick for fasthttp: a bare proxy, a
// fasthttp.Server in front of one HostClient and nothing else, to tell what fasthttp itself
// costs on this machine from what the gateway's fasthttp engine adds.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9009", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:9001", "upstream host:port")
	flag.Parse()
	client := &fasthttp.HostClient{Addr: *upstream, MaxConns: 4096}
	handler := func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	log.Fatal((&fasthttp.Server{Handler: handler}).ListenAndServe(*addr))
}
