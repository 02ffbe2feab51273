package gateway

import (
	"fmt"
	"net"

	"github.com/shopmesh/shopmesh/services/pki"
)

// upstreamPeers maps the address ("host:port") of every https upstream to the identity it must
// present, resolving each route's identity with resolve. With mutual TLS on, an https upstream
// without an identity, or one address named with two identities, is a configuration error.
func (t *Table) upstreamPeers(resolve func(string) (pki.ID, error)) (map[string]pki.ID, error) {
	peers := map[string]pki.ID{}
	for _, r := range t.Routes {
		for _, u := range r.Upstreams {
			if u.target.Scheme != "https" {
				continue
			}
			if u.Identity == "" {
				return nil, fmt.Errorf("line %d: route %q: upstream %s needs an identity (the service name its certificate carries, e.g. products) when TLS_MODE=mtls",
					r.line, r.Name, u.URL)
			}
			id, err := resolve(u.Identity)
			if err != nil {
				return nil, fmt.Errorf("line %d: route %q: upstream %s: %w", r.line, r.Name, u.URL, err)
			}
			addr := u.target.Host
			if u.target.Port() == "" {
				addr = net.JoinHostPort(u.target.Hostname(), "443")
			}
			if prev, ok := peers[addr]; ok && prev != id {
				return nil, fmt.Errorf("line %d: route %q: upstream %s is named both %s and %s", r.line, r.Name, addr, prev, id)
			}
			peers[addr] = id
		}
	}
	return peers, nil
}
