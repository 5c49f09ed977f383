// Package servetest runs the real `timmy serve` binary as a child process
// for tests that need a whole service: crash recovery with SIGKILL, restarts,
// and the regtest integration suite.
package servetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/internal/apitest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/timmy with the race detector, once per test binary.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, here, _, _ := runtime.Caller(0)
		pkg := filepath.Join(filepath.Dir(here), "..", "..", "cmd", "timmy")
		dir, err := os.MkdirTemp("", "timmy-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "timmy")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, ".")
		cmd.Dir = pkg
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build cmd/timmy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is one running `timmy serve`.
type Process struct {
	Cmd    *exec.Cmd
	URL    string
	Client *api.ClientWithResponses
	logs   *logBuffer
}

// Logs returns what the process has written so far.
func (p *Process) Logs() string { return p.logs.String() }

// Start runs `timmy serve` with envs on top of a minimal environment (no
// network price sources, debug logs) and waits until /api/healthz answers.
// The process is killed when the test ends, and its logs are printed if the
// test failed.
func Start(t testing.TB, envs map[string]string) *Process {
	t.Helper()
	port := FreePort(t)
	cmd := exec.Command(Binary(t), "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), fmt.Sprintf("PORT=%d", port),
		"LOG_LEVEL=debug", "BTC_PRICE_SOURCES=none"}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, URL: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("timmy serve (%s) logs:\n%s", p.URL, logs.String())
		}
	})
	client, err := api.NewClientWithResponses(p.URL, api.WithHTTPClient(apitest.Client(t)))
	if err != nil {
		t.Fatal(err)
	}
	p.Client = client
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.GetHealthWithResponse(context.Background())
		if err == nil && resp.StatusCode() == 200 {
			return p
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("timmy serve never became healthy:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
