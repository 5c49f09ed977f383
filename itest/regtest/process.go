//go:build itest

package regtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a daemon gets to exit after SIGINT before it is
// killed. lnd and btcd both shut down in well under a second when idle; the
// grace only exists so their logs end with a clean shutdown message.
const stopGrace = 10 * time.Second

// process is one daemon started by the harness, with its combined
// stdout/stderr written to a log file so failures can be diagnosed after the
// fact.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File

	done    chan struct{}
	waitErr error

	stopOnce sync.Once
}

// startProcess starts bin with args, logging to logPath. The child gets its
// own HOME so neither daemon writes default config or data directories into
// the developer's real home directory.
func startProcess(name, bin, home, logPath string, args ...string) (*process, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("create home for %s: %w", name, err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", name, err)
	}

	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.SysProcAttr = procAttr()

	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, filepath.Base(bin), err)
	}

	p := &process{
		name:    name,
		logPath: logPath,
		cmd:     cmd,
		logFile: logFile,
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already terminated, and how. It
// lets wait loops fail fast with the daemon's own error instead of timing
// out when, say, lnd rejects a flag.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop interrupts the process and kills it if it has not exited within
// stopGrace. It is safe to call more than once.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(stopGrace):
			}
		}
	})
}

// tailLog returns up to the last maxLines lines of a log file, for printing
// after a failed test.
func tailLog(path string, maxLines int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot open %s: %v)", path, err)
	}
	defer f.Close()

	const maxBytes = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		if _, err := f.Seek(st.Size()-maxBytes, io.SeekStart); err != nil {
			return fmt.Sprintf("(cannot seek %s: %v)", path, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
