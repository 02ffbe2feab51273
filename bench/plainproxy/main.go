// Command plainproxy is make bench-gateway's yardstick for Go itself: a bare
// httputil.ReverseProxy (pooled connections, nothing else), to tell what net/http costs on
// this machine from what the gateway adds.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9005", "listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:9001", "upstream URL")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}
	proxy.ErrorLog = log.New(log.Writer(), "", 0)
	log.Fatal(http.ListenAndServe(*addr, proxy))
}
