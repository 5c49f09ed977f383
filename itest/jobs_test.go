//go:build itest

// Package itest runs Timmy end to end on a real regtest Lightning network:
// the `timmy serve` binary on the LND backend, and a buyer's lnd node paying
// its real hold invoices.
package itest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/internal/servetest"
	"github.com/timmyhq/timmy/itest/regtest"
)

// service starts `timmy serve` on the network's service node, with its data
// in dataDir so a restart can pick up where it left off.
func service(t *testing.T, net *regtest.Network, dataDir string) *servetest.Process {
	t.Helper()
	return servetest.Start(t, map[string]string{
		"TIMMY_DATA_DIR":     dataDir,
		"LND_REST_URL":       net.Service.RESTURL,
		"LND_MACAROON_PATH":  net.Service.MacaroonPath,
		"LND_TLS_CERT_PATH":  net.Service.TLSCertPath,
		"RECONCILE_INTERVAL": "300ms",
	})
}

func getJob(t *testing.T, p *servetest.Process, id string) *api.Job {
	t.Helper()
	resp, err := p.Client.GetJobWithResponse(context.Background(), mustUUID(t, id))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
	return resp.JSON200
}

// waitJob polls until the job is in state want. The job advances on its own
// (the service watches lnd); this only reads.
func waitJob(t *testing.T, p *servetest.Process, id string, want api.JobState) *api.Job {
	t.Helper()
	var job *api.Job
	require.Eventually(t, func() bool {
		job = getJob(t, p, id)
		return job.State == want
	}, 60*time.Second, 100*time.Millisecond, "job never reached %s", want)
	return job
}

func waitInvoice(t *testing.T, p *servetest.Process, id string, work bool, want api.InvoiceStatus) *api.Job {
	t.Helper()
	var job *api.Job
	require.Eventually(t, func() bool {
		job = getJob(t, p, id)
		inv := job.EvalInvoice
		if work {
			inv = job.WorkInvoice
		}
		return inv != nil && inv.Status != nil && *inv.Status == want
	}, 60*time.Second, 100*time.Millisecond, "invoice never reached %s", want)
	return job
}

func createJob(t *testing.T, p *servetest.Process, request string) *api.CreatedJob {
	t.Helper()
	resp, err := p.Client.CreateJobWithResponse(context.Background(), api.CreateJobJSONRequestBody{Request: request})
	require.NoError(t, err)
	require.Equal(t, 201, resp.StatusCode(), string(resp.Body))
	return resp.JSON201
}

// buyerBalance is the buyer's local channel balance once no HTLC is in
// flight, so it can be compared exactly.
func buyerBalance(t *testing.T, net *regtest.Network) int64 {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, net.Buyer.WaitChannelsIdle(ctx, 30*time.Second))
	local, _, err := net.Buyer.ChannelBalanceSats(ctx)
	require.NoError(t, err)
	return local
}

func TestJobsOnRegtest(t *testing.T) {
	start := time.Now()
	net := regtest.Start(t)
	t.Logf("regtest network up in %s", net.StartDuration)
	ctx := context.Background()

	t.Run("complete job settles held payments", func(t *testing.T) {
		p := service(t, net, t.TempDir())
		before := buyerBalance(t, net)
		created := createJob(t, p, "Write a haiku about regtest")
		id := created.JobId.String()
		require.True(t, *created.EvalInvoice.Hold)

		evalPay, err := net.Buyer.PayInvoiceAsync(ctx, created.EvalInvoice.PaymentRequest)
		require.NoError(t, err)
		defer evalPay.Close()
		job := waitJob(t, p, id, api.JobStateAwaitingWorkPayment)
		res, err := evalPay.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, regtest.PaymentSucceeded, res.Status, "the eval fee is settled once the evaluation is made")

		workPay, err := net.Buyer.PayInvoiceAsync(ctx, job.WorkInvoice.PaymentRequest)
		require.NoError(t, err)
		defer workPay.Close()
		job = waitJob(t, p, id, api.JobStateComplete)
		require.Contains(t, *job.Result, "regtest")
		res, err = workPay.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, regtest.PaymentSucceeded, res.Status, "the held work payment is settled after the result is stored")
		job = waitInvoice(t, p, id, true, api.InvoiceStatusSettled)

		paid := job.EvalInvoice.AmountSats + job.WorkInvoice.AmountSats
		require.Equal(t, before-paid, buyerBalance(t, net), "the buyer paid exactly the two fees")
		require.Equal(t, job.WorkInvoice.AmountSats, job.CostLedger.ChargedSats)
	})

	t.Run("failed job cancels the held work payment", func(t *testing.T) {
		p := service(t, net, t.TempDir())
		created := createJob(t, p, "this will [fail] at work")
		id := created.JobId.String()
		evalPay, err := net.Buyer.PayInvoiceAsync(ctx, created.EvalInvoice.PaymentRequest)
		require.NoError(t, err)
		defer evalPay.Close()
		job := waitJob(t, p, id, api.JobStateAwaitingWorkPayment)
		res, err := evalPay.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, regtest.PaymentSucceeded, res.Status)

		before := buyerBalance(t, net)
		workPay, err := net.Buyer.PayInvoiceAsync(ctx, job.WorkInvoice.PaymentRequest)
		require.NoError(t, err)
		defer workPay.Close()
		job = waitJob(t, p, id, api.JobStateFailed)
		require.Contains(t, *job.ErrorMessage, "work failed")
		res, err = workPay.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, regtest.PaymentFailed, res.Status, "the held payment went back to the buyer")
		waitInvoice(t, p, id, true, api.InvoiceStatusCancelled)
		require.Equal(t, before, buyerBalance(t, net), "the buyer's channel balance is exactly as before the work payment")
	})

	t.Run("payment made while the service is down completes after restart", func(t *testing.T) {
		dataDir := t.TempDir()
		p := service(t, net, dataDir)
		created := createJob(t, p, "pay me while I am down")
		id := created.JobId.String()
		require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, p.Cmd.Wait())

		evalPay, err := net.Buyer.PayInvoiceAsync(ctx, created.EvalInvoice.PaymentRequest)
		require.NoError(t, err)
		defer evalPay.Close()
		_, err = evalPay.WaitStatus(ctx, regtest.PaymentInFlight)
		require.NoError(t, err, "lnd holds the payment while nobody is there to settle it")

		p = service(t, net, dataDir)
		// Nobody reads the job until it has advanced: the reconcile on start
		// found the held payment.
		res, err := evalPay.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, regtest.PaymentSucceeded, res.Status)
		require.Equal(t, api.JobStateAwaitingWorkPayment, getJob(t, p, id).State)
	})
	t.Logf("regtest suite took %s", time.Since(start).Round(time.Second))
}
