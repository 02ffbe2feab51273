//go:build !faults

package orders

import "github.com/shopmesh/shopmesh/services/internal/envconf"

// faults injects failures for `shopmesh scenario faults`; only a build with the faults tag has
// any (fault_on.go).
type faults struct{}

func readFaults(*envconf.Reader) faults { return faults{} }

func (faults) afterReserve() {}
