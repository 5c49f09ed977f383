package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/internal/apitest"
	"github.com/timmyhq/timmy/internal/env"
	stubln "github.com/timmyhq/timmy/lightning/stub"
	"github.com/timmyhq/timmy/store"
	"github.com/timmyhq/timmy/store/storetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// timmyBinary builds the real binary once per test run.
func timmyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "timmy-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "timmy")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is one `timmy serve` child process.
type process struct {
	cmd    *exec.Cmd
	url    string
	logs   *syncWriter
	client *api.ClientWithResponses
}

// startServe runs `timmy serve` with the given environment on top of a
// clean one and waits until it answers /api/healthz.
func startServe(t *testing.T, envs map[string]string) *process {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(timmyBinary(t), "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), fmt.Sprintf("PORT=%d", port), "LOG_LEVEL=debug",
		"BTC_PRICE_COINGECKO_URL=http://127.0.0.1:1"}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("timmy serve logs:\n%s", logs.String())
		}
	})
	var err error
	p.client, err = api.NewClientWithResponses(p.url, api.WithHTTPClient(apitest.Client(t)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := p.client.GetHealthWithResponse(context.Background())
		return err == nil && resp.StatusCode() == 200
	}, 60*time.Second, 50*time.Millisecond, "timmy serve never became healthy")
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (p *process) pay(t *testing.T, hash string) {
	t.Helper()
	resp, err := p.client.DevPayInvoiceWithResponse(context.Background(), hash)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
}

// dbEnv returns the environment that points a process at the test's
// database, and a store handle on the same database.
func dbEnv(t *testing.T, engine store.Engine) (map[string]string, *store.DB) {
	t.Helper()
	dataDir := t.TempDir()
	if engine == store.SQLite {
		db := storetest.Reopen(t, engine, filepath.Join(dataDir, "timmy.db"))
		require.NoError(t, db.Migrate(context.Background()))
		return map[string]string{"TIMMY_DATA_DIR": dataDir}, db
	}
	db, dsn := storetest.OpenWithDSN(t, engine)
	return map[string]string{"TIMMY_DATA_DIR": dataDir, "DATABASE_URL": dsn}, db
}

func waitState(t *testing.T, db *store.DB, id string, want timmy.JobState, within time.Duration) *timmy.Job {
	t.Helper()
	var job *timmy.Job
	require.Eventually(t, func() bool {
		var err error
		job, err = db.GetJob(context.Background(), id)
		require.NoError(t, err)
		return job.State == want
	}, within, 25*time.Millisecond, "job never reached %s", want)
	return job
}

// TestCrashDuringExecutingIsRecovered kills a `timmy serve` with SIGKILL
// while the agent works; a second process completes the job once the dead
// one's lease lapses, and the result is stored once.
func TestCrashDuringExecutingIsRecovered(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(string(engine), func(t *testing.T) {
			t.Parallel()
			envs, db := dbEnv(t, engine)
			envs["STUB_AGENT_DELAY"] = "1500ms"
			envs["JOB_LEASE_DURATION"] = "2s"
			envs["RECONCILE_INTERVAL"] = "200ms"
			first := startServe(t, envs)

			created, err := first.client.CreateJobWithResponse(context.Background(), api.CreateJobJSONRequestBody{Request: "survive a crash"})
			require.NoError(t, err)
			require.Equal(t, 201, created.StatusCode(), string(created.Body))
			id := created.JSON201.JobId.String()
			first.pay(t, created.JSON201.EvalInvoice.PaymentHash)
			job := waitState(t, db, id, timmy.JobAwaitingWorkPayment, 30*time.Second)
			first.pay(t, job.WorkInvoice.PaymentHash.String())
			waitState(t, db, id, timmy.JobExecuting, 30*time.Second)

			require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
			_ = first.cmd.Wait()
			killedAt := time.Now()
			job, err = db.GetJob(context.Background(), id)
			require.NoError(t, err)
			require.Equal(t, timmy.JobExecuting, job.State, "the kill interrupted the work")

			startServe(t, envs)
			done := waitState(t, db, id, timmy.JobComplete, 60*time.Second)
			require.GreaterOrEqual(t, time.Since(killedAt), 500*time.Millisecond, "the second process waited for the lease")
			require.Contains(t, done.Result, "survive a crash")

			events, err := db.JobEvents(context.Background(), id)
			require.NoError(t, err)
			completes := 0
			for _, e := range events {
				if e.To == timmy.JobComplete {
					completes++
				}
			}
			require.Equal(t, 1, completes, "the result is stored once")
			require.Eventually(t, func() bool {
				inv, err := db.GetInvoice(context.Background(), job.WorkInvoice.PaymentHash)
				require.NoError(t, err)
				return inv.Resolved && inv.Status == timmy.InvoiceSettled
			}, 30*time.Second, 25*time.Millisecond, "the held work payment is settled after recovery")
		})
	}
}

// TestPaidWhileDownCompletesAfterRestart: the buyer pays while no service
// runs; on start the reconcile finds the payment and the job completes with
// no client calling GET.
func TestPaidWhileDownCompletesAfterRestart(t *testing.T) {
	t.Parallel()
	envs, db := dbEnv(t, store.SQLite)
	envs["RECONCILE_INTERVAL"] = "200ms"
	p := startServe(t, envs)
	created, err := p.client.CreateJobWithResponse(context.Background(), api.CreateJobJSONRequestBody{Request: "pay me while I sleep"})
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode())
	id := created.JSON201.JobId.String()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait(), "graceful shutdown exits 0")

	// The buyer pays the stub node directly while the service is down.
	ln, err := stubln.New(db, filepath.Join(envs["TIMMY_DATA_DIR"], "stub-node.key"))
	require.NoError(t, err)
	hash, err := timmy.ParsePaymentHash(created.JSON201.EvalInvoice.PaymentHash)
	require.NoError(t, err)
	_, err = ln.Pay(context.Background(), hash)
	require.NoError(t, err)

	startServe(t, envs)
	waitState(t, db, id, timmy.JobAwaitingWorkPayment, 30*time.Second)
}

func TestProductionStartupChecks(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		return map[string]string{"TIMMY_ENV": "production", "TIMMY_DATA_DIR": t.TempDir(), "BTC_PRICE_COINGECKO_URL": "http://127.0.0.1:1"}
	}
	_, err := NewMain(context.Background(), env.FromMap(base()), &bytes.Buffer{})
	require.ErrorContains(t, err, "refusing to start")
	require.ErrorContains(t, err, "ALLOW_STUB_LIGHTNING")

	allowed := base()
	allowed["ALLOW_STUB_LIGHTNING"] = "true"
	allowed["PORT"] = fmt.Sprint(freePort(t))
	logs := &bytes.Buffer{}
	m, err := NewMain(context.Background(), env.FromMap(allowed), logs)
	require.NoError(t, err)
	require.NoError(t, m.Run(context.Background()))
	defer m.Close()
	require.Contains(t, logs.String(), `"msg":"timmy configured"`, "production logs are JSON")

	client, err := api.NewClientWithResponses("http://"+m.Addr(), api.WithHTTPClient(apitest.Client(t)))
	require.NoError(t, err)
	resp, err := client.DevPayInvoiceWithResponse(context.Background(), strings.Repeat("ab", 32))
	require.NoError(t, err)
	require.Equal(t, 404, resp.StatusCode(), "no dev route in production")
}

func TestConfigErrorsAreAllReported(t *testing.T) {
	t.Parallel()
	_, err := NewMain(context.Background(), env.FromMap(map[string]string{
		"TIMMY_DATA_DIR": t.TempDir(), "PORT": "nope", "EVAL_FEE_SATS": "0", "TRUSTED_PROXIES": "10.0.0.0/8, bogus", "TIMMY_ENV": "staging",
	}), &bytes.Buffer{})
	require.Error(t, err)
	for _, want := range []string{"PORT", "EVAL_FEE_SATS", "bogus", "TIMMY_ENV"} {
		require.ErrorContains(t, err, want)
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	envs, _ := dbEnv(t, store.SQLite)
	p := startServe(t, envs)
	runCLI := func(args ...string) (string, error) {
		cmd := exec.Command(timmyBinary(t), args...)
		cmd.Env = []string{"TIMMY_URL=" + p.url, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := runCLI("job", "create", "hello from the CLI")
	require.NoError(t, err, out)
	require.Contains(t, out, "lnbcrt")
	require.Contains(t, out, "█", "a QR code is printed")
	var id, hash string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "job ") {
			id = strings.Fields(line)[1]
		}
		if strings.HasPrefix(line, "payment hash: ") {
			hash = strings.TrimPrefix(line, "payment hash: ")
		}
	}
	require.NotEmpty(t, id)
	out, err = runCLI("dev", "pay", hash)
	require.NoError(t, err, out)
	require.Contains(t, out, "accepted", "stub invoices are held until the evaluation is made")
	out, err = runCLI("job", "get", id)
	require.NoError(t, err, out)
	require.Contains(t, out, `"jobId": "`+id+`"`)
	out, err = runCLI("dev", "pay", hash)
	require.Error(t, err)
	require.Contains(t, out, "409")
}
