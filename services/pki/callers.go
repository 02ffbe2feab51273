package pki

// AllowedCallers lists the services (in the same namespace) allowed to call service: the
// gateway calls all three; orders calls products (reservations) and users (its signing keys);
// products calls users for the signing keys too. Nobody calls the gateway from inside: it is
// the way in. Both the services' own mTLS and Istio's AuthorizationPolicies use this list.
func AllowedCallers(service string) []string {
	switch service {
	case "users":
		return []string{"gateway", "orders", "products"}
	case "products":
		return []string{"gateway", "orders"}
	case "orders":
		return []string{"gateway"}
	}
	return nil
}
