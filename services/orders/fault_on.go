//go:build faults

package orders

import (
	"os"

	"github.com/shopmesh/shopmesh/services/internal/envconf"
)

// faults injects failures for `shopmesh scenario faults`, which builds with the faults tag:
// FAULT_EXIT_AFTER_RESERVE=true makes the process exit after products reserved an order's
// stock and before the order is stored — the crash the reservation's expiry must repair.
type faults struct{ exitAfterReserve bool }

func readFaults(r *envconf.Reader) faults {
	return faults{exitAfterReserve: r.Bool("FAULT_EXIT_AFTER_RESERVE", false)}
}

func (f faults) afterReserve() {
	if f.exitAfterReserve {
		os.Exit(3)
	}
}
