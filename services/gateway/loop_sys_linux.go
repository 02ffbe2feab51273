//go:build linux

package gateway

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls on its own non-blocking descriptors cannot block, so they are made
// raw, as a C event loop makes them: the Go scheduler is not told of them (no entersyscall and
// exitsyscall). The loop waits for events in the runtime's poller, not in a system call (see
// loop.run). Measured side by side with JWT and a limit on (docs/performance.md), raw calls
// gave the engine 6 % more throughput.

// sysRead is read(2) on a non-blocking descriptor.
func sysRead(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

// sysWrite is write(2) on a non-blocking descriptor.
func sysWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// readyEvents fills l.events with what is ready now, without waiting: the loop waits in the
// runtime's poller instead (see run). An error, which a descriptor of the loop's own does not
// give, reads as nothing ready.
func (l *loop) readyEvents() int {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		switch e {
		case 0:
			return int(n)
		case unix.EINTR: // not expected without a wait; look again
			continue
		}
		return 0
	}
}
