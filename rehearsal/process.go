package rehearsal

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// pod is one replica of a workload: the service binary with the workload's environment.
type pod struct {
	name string // users-0
	w    *Workload
	addr string // where it listens: 127.0.0.1:port
	cmd  *exec.Cmd
	log  string
	exit chan error
}

// startPod starts one replica and waits until its readiness probe answers 200, as the kubelet
// would before the pod becomes an endpoint. env is the rendered environment with the
// rehearsal's substitutions.
func startPod(ctx context.Context, bin, logDir string, w *Workload, n int, env map[string]string) (*pod, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &pod{name: fmt.Sprintf("%s-%d", w.Name, n), w: w, addr: fmt.Sprintf("127.0.0.1:%d", port), exit: make(chan error, 1)}
	p.log = filepath.Join(logDir, p.name+".log")
	logFile, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(filepath.Join(bin, w.Name))
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + logDir}
	for _, k := range sortedKeys(env) {
		p.cmd.Env = append(p.cmd.Env, k+"="+env[k])
	}
	p.cmd.Env = append(p.cmd.Env, "HTTP_ADDR="+p.addr)
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() { p.exit <- p.cmd.Wait(); logFile.Close() }()
	if err := p.waitReady(ctx, 20*time.Second); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (p *pod) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exit:
			p.exit <- err
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, err, p.tail(12))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := client.Get("http://" + p.addr + p.w.Readiness)
		if err != nil {
			continue
		}
		body := make([]byte, 512)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body[:n])))
	}
	return fmt.Errorf("%s never became ready in %s: %s %s answered %s\n%s", p.name, limit, p.w.Readiness, p.addr, last, p.tail(8))
}

// stop terminates the pod as the kubelet does: the preStop sleep, SIGTERM, and SIGKILL when
// the grace period (which the preStop counts against) runs out. It returns the exit error.
func (p *pod) stop() error {
	grace := time.After(p.w.Grace)
	select {
	case err := <-p.exit:
		return fmt.Errorf("%s had exited: %v", p.name, err)
	case <-time.After(p.w.PreStop):
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exit:
		return err
	case <-grace:
		p.kill()
		return fmt.Errorf("%s outlived its %s grace period and was killed", p.name, p.w.Grace)
	}
}

func (p *pod) kill() {
	_ = p.cmd.Process.Kill()
}

func (p *pod) tail(lines int) string {
	b, _ := os.ReadFile(p.log)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "    " + strings.Join(all, "\n    ")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
