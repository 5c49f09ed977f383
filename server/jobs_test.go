package server_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/google/uuid"
	"github.com/lightningnetwork/lnd/zpay32"
	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/stub"
	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/store/storetest"
)

func mustHash(t testing.TB, s string) timmy.PaymentHash {
	t.Helper()
	h, err := timmy.ParsePaymentHash(s)
	require.NoError(t, err)
	return h
}

func mustUUID(t testing.TB, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	require.NoError(t, err)
	return id
}

// TestFullFlow drives a job from creation to result against a real
// listening server. Between payments nobody calls GET: the job must advance
// on its own.
func TestFullFlow(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(string(engine), func(t *testing.T) {
			t.Parallel()
			in := setup(t, options{engine: engine})
			created := in.createJob(t, "Write a haiku about Lightning payments")
			id := created.JobId.String()
			require.Equal(t, int64(10), created.EvalInvoice.AmountSats)

			// The invoice is a real BOLT11 invoice: decoding gives back the
			// hash and the amount, signed by the stub node.
			decoded, err := zpay32.Decode(created.EvalInvoice.PaymentRequest, &chaincfg.RegressionNetParams)
			require.NoError(t, err)
			require.Equal(t, created.EvalInvoice.PaymentHash, fmt.Sprintf("%x", decoded.PaymentHash[:]))
			require.Equal(t, int64(10_000), int64(*decoded.MilliSat))
			require.True(t, decoded.Destination.IsEqual(in.stub.NodePubKey()))

			in.pay(t, created.EvalInvoice.PaymentHash)
			in.waitState(t, id, timmy.JobAwaitingWorkPayment)

			job := in.getJob(t, id)
			require.Equal(t, api.JobStateAwaitingWorkPayment, job.State)
			require.NotNil(t, job.WorkInvoice)
			require.NotNil(t, job.PricingBreakdown)
			require.Equal(t, job.WorkInvoice.AmountSats, job.PricingBreakdown.AmountSats)
			require.Equal(t, job.WorkInvoice.ExpiresAt, job.PricingBreakdown.QuoteExpiresAt, "the quote expires with its invoice")
			require.Eventually(t, func() bool { return *in.getJob(t, id).EvalInvoice.Status == api.InvoiceStatusSettled }, 10*time.Second, 20*time.Millisecond,
				"the eval fee is taken once the evaluation is made")
			require.Equal(t, stub.Model, *job.EvalModel)

			in.pay(t, job.WorkInvoice.PaymentHash)
			done := in.waitState(t, id, timmy.JobComplete)
			require.Contains(t, done.Result, "stub agent")

			job = in.getJob(t, id)
			require.Equal(t, api.JobStateComplete, job.State)
			require.Contains(t, *job.Result, "Write a haiku")
			require.NotNil(t, job.CostLedger)
			require.Equal(t, job.CostLedger.ActualInputTokens+job.CostLedger.ActualOutputTokens, job.CostLedger.TotalTokens)
			require.Equal(t, job.WorkInvoice.AmountSats, job.CostLedger.ChargedSats)
			require.Equal(t, stub.CountTokens(*job.Result), job.CostLedger.ActualOutputTokens)

			// The held work payment is settled once the result is stored.
			require.Eventually(t, func() bool {
				j := in.getJob(t, id)
				return *j.WorkInvoice.Status == api.InvoiceStatusSettled
			}, 10*time.Second, 20*time.Millisecond)
			require.Equal(t, int64(1), in.agent.executes.Load())
		})
	}
}

func TestRejectedJob(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	created := in.createJob(t, "please [reject] this")
	in.pay(t, created.EvalInvoice.PaymentHash)
	in.waitState(t, created.JobId.String(), timmy.JobRejected)
	job := in.getJob(t, created.JobId.String())
	require.Equal(t, api.JobStateRejected, job.State)
	require.Contains(t, *job.Reason, "reject marker")
	require.Nil(t, job.WorkInvoice)
	require.Eventually(t, func() bool {
		return *in.getJob(t, created.JobId.String()).EvalInvoice.Status == api.InvoiceStatusSettled
	}, 10*time.Second, 20*time.Millisecond,
		"a rejection is an evaluation made: the eval fee is kept")
}

func TestExpiredJob(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	created := in.createJob(t, "nobody pays for this")
	later := func() time.Time { return time.Now().Add(time.Hour) }
	in.jobs.SetClock(later)
	in.stub.SetClock(later)
	in.jobs.ReconcileSoon()
	in.waitState(t, created.JobId.String(), timmy.JobExpired)
	job := in.getJob(t, created.JobId.String())
	require.Equal(t, api.JobStateExpired, job.State)
	require.Contains(t, *job.ErrorMessage, "expired")

	// The hold invoice is cancelled at the node, and cannot be paid any more.
	require.Eventually(t, func() bool {
		inv, err := in.stub.LookupInvoice(context.Background(), mustHash(t, created.EvalInvoice.PaymentHash))
		require.NoError(t, err)
		return inv == timmy.InvoiceCancelled
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, api.InvoiceStatusExpired, *in.getJob(t, created.JobId.String()).EvalInvoice.Status)
	resp, err := in.client.DevPayInvoiceWithResponse(context.Background(), created.EvalInvoice.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, 409, resp.StatusCode())
	require.Contains(t, resp.JSON409.Error, "expired")
}

// TestFailedWorkReturnsHeldPayment: an agent failure fails the job, and the
// held work payment goes back to the buyer instead of being taken.
func TestFailedWorkReturnsHeldPayment(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	created := in.createJob(t, "this will [fail] at work")
	id := created.JobId.String()
	in.pay(t, created.EvalInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobAwaitingWorkPayment)
	job := in.getJob(t, id)
	in.pay(t, job.WorkInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobFailed)
	require.Eventually(t, func() bool {
		job = in.getJob(t, id)
		return *job.WorkInvoice.Status == api.InvoiceStatusCancelled
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, *job.ErrorMessage, "work failed")
	require.Nil(t, job.Refund, "a cancelled hold needs no refund")
	require.Eventually(t, func() bool { return *in.getJob(t, id).EvalInvoice.Status == api.InvoiceStatusSettled }, 10*time.Second, 20*time.Millisecond,
		"the evaluation was made, so its fee is kept")
}

// TestExactlyOnceAcrossReplicas runs two service instances on one database
// and hits a paid job with 50 concurrent GETs spread over both. The agent
// runs once and the job completes once.
func TestExactlyOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(string(engine), func(t *testing.T) {
			t.Parallel()
			a := setup(t, options{engine: engine, agent: stub.New(stub.Config{Delay: 300 * time.Millisecond})})
			b := setup(t, options{shareWith: a, agent: stub.New(stub.Config{Delay: 300 * time.Millisecond})})
			created := a.createJob(t, "count me once")
			id := created.JobId.String()
			a.pay(t, created.EvalInvoice.PaymentHash)
			a.waitState(t, id, timmy.JobAwaitingWorkPayment)
			work := b.getJob(t, id).WorkInvoice
			b.pay(t, work.PaymentHash)

			var wg sync.WaitGroup
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					in := a
					if i%2 == 1 {
						in = b
					}
					resp, err := in.client.GetJobWithResponse(context.Background(), created.JobId)
					require.NoError(t, err)
					require.Equal(t, 200, resp.StatusCode())
				}()
			}
			wg.Wait()
			a.waitState(t, id, timmy.JobComplete)
			require.Eventually(t, func() bool { return *a.getJob(t, id).WorkInvoice.Status == api.InvoiceStatusSettled }, 10*time.Second, 20*time.Millisecond)

			require.Equal(t, int64(1), a.agent.executes.Load(), "Execute ran exactly once across both replicas")
			require.Equal(t, 1, storetest.Transitions(t, a.db, id, timmy.JobComplete), "the job completed once")
		})
	}
}

func TestQuoteUsesCostModel(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	created := in.createJob(t, "price this request please")
	in.pay(t, created.EvalInvoice.PaymentHash)
	in.waitState(t, created.JobId.String(), timmy.JobAwaitingWorkPayment)
	b := in.getJob(t, created.JobId.String()).PricingBreakdown
	require.Equal(t, float64(100000), b.BtcPriceUsd)
	total := (b.EstimatedCostUsd + b.InfraCostUsd) * (1 + b.MarginPct/100)
	require.Equal(t, int64(math.Ceil(total/b.BtcPriceUsd*1e8)), b.AmountSats)
}
