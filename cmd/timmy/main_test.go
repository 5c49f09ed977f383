package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/internal/apitest"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/internal/servetest"
	stubln "github.com/timmyhq/timmy/lightning/stub"
	"github.com/timmyhq/timmy/store"
	"github.com/timmyhq/timmy/store/storetest"
)

func freePort(t *testing.T) int { return servetest.FreePort(t) }

func startServe(t *testing.T, envs map[string]string) *servetest.Process {
	t.Helper()
	return servetest.Start(t, envs)
}

func pay(t *testing.T, p *servetest.Process, hash string) {
	t.Helper()
	resp, err := p.Client.DevPayInvoiceWithResponse(context.Background(), hash)
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
	return storetest.WaitState(t, db, id, want, within)
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

			created, err := first.Client.CreateJobWithResponse(context.Background(), api.CreateJobJSONRequestBody{Request: "survive a crash"})
			require.NoError(t, err)
			require.Equal(t, 201, created.StatusCode(), string(created.Body))
			id := created.JSON201.JobId.String()
			pay(t, first, created.JSON201.EvalInvoice.PaymentHash)
			job := waitState(t, db, id, timmy.JobAwaitingWorkPayment, 30*time.Second)
			pay(t, first, job.WorkInvoice.PaymentHash.String())
			waitState(t, db, id, timmy.JobExecuting, 30*time.Second)

			require.NoError(t, first.Cmd.Process.Signal(syscall.SIGKILL))
			_ = first.Cmd.Wait()
			killedAt := time.Now()
			job, err = db.GetJob(context.Background(), id)
			require.NoError(t, err)
			require.Equal(t, timmy.JobExecuting, job.State, "the kill interrupted the work")

			startServe(t, envs)
			done := waitState(t, db, id, timmy.JobComplete, 60*time.Second)
			require.GreaterOrEqual(t, time.Since(killedAt), 500*time.Millisecond, "the second process waited for the lease")
			require.Contains(t, done.Result, "survive a crash")

			require.Equal(t, 1, storetest.Transitions(t, db, id, timmy.JobComplete), "the result is stored once")
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
	created, err := p.Client.CreateJobWithResponse(context.Background(), api.CreateJobJSONRequestBody{Request: "pay me while I sleep"})
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode())
	id := created.JSON201.JobId.String()
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.Cmd.Wait(), "graceful shutdown exits 0")

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
		return map[string]string{"TIMMY_ENV": "production", "TIMMY_DATA_DIR": t.TempDir(), "BTC_PRICE_SOURCES": "none"}
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
		cmd := exec.Command(servetest.Binary(t), args...)
		cmd.Env = []string{"TIMMY_URL=" + p.URL, "PATH=" + os.Getenv("PATH")}
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

// TestCLIWaitFollowsTheJob runs `timmy job create --wait`, pays each invoice
// it prints, and expects it to print progress and end with the result and
// the ledger.
func TestCLIWaitFollowsTheJob(t *testing.T) {
	t.Parallel()
	envs, _ := dbEnv(t, store.SQLite)
	p := startServe(t, envs)
	cmd := exec.Command(servetest.Binary(t), "job", "create", "follow me to the end", "--wait")
	cmd.Env = []string{"TIMMY_URL=" + p.URL, "PATH=" + os.Getenv("PATH")}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var out strings.Builder
	scanner := bufio.NewScanner(stdout)
	paid := 0
	for scanner.Scan() {
		line := scanner.Text()
		out.WriteString(line + "\n")
		if hash, ok := strings.CutPrefix(line, "payment hash: "); ok {
			pay(t, p, hash)
			paid++
		}
	}
	require.NoError(t, cmd.Wait(), out.String())
	require.Equal(t, 2, paid, "the eval and the work invoice were printed")
	for _, want := range []string{"awaiting_eval_payment", "awaiting_work_payment", "Quote: timmy-stub-1", "complete", "follow me to the end", "Ledger:"} {
		require.Contains(t, out.String(), want)
	}
}
