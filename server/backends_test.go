package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/anthropic"
	"github.com/timmyhq/timmy/agent/anthropic/anthropictest"
	"github.com/timmyhq/timmy/agent/openai/openaitest"
	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/lightning/lnbits"
	"github.com/timmyhq/timmy/lightning/lnbits/lnbitstest"
)

// runPaidJob drives a job through both payments with pay, and returns it
// complete.
func runPaidJob(t *testing.T, in *instance, request string, pay func(hash string)) *api.Job {
	t.Helper()
	created := in.createJob(t, request)
	id := created.JobId.String()
	pay(created.EvalInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobAwaitingWorkPayment)
	job := in.getJob(t, id)
	pay(job.WorkInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobComplete)
	return in.getJob(t, id)
}

func TestFullFlowWithAnthropic(t *testing.T) {
	t.Parallel()
	fake := anthropictest.New(t)
	fake.Accept("A haiku is well within scope.")
	fake.EvalUsage(211, 37)
	fake.WorkReply("Invoices settle fast / sats hop across the channels / the agent is paid", 523, 871)
	agent := fake.NewAgent(t)
	in := setup(t, options{engine: "sqlite", agent: agent})

	job := runPaidJob(t, in, "Write a haiku about Lightning", func(h string) { in.pay(t, h) })
	cfg := fake.Config()
	require.Equal(t, cfg.EvalModel, *job.EvalModel, "the eval model appears in the response")
	require.Equal(t, cfg.WorkModel, job.PricingBreakdown.Model, "the work model appears in the quote")
	require.Equal(t, cfg.WorkModel, *job.CostLedger.Model)
	require.Equal(t, "Invoices settle fast / sats hop across the channels / the agent is paid", *job.Result)

	usage := fake.LastUsage(anthropictest.Work)
	require.Equal(t, int64(523), usage.InputTokens)
	require.Equal(t, usage.InputTokens, job.CostLedger.ActualInputTokens, "ledger tokens are the usage the API returned")
	require.Equal(t, usage.OutputTokens, job.CostLedger.ActualOutputTokens)
	require.Equal(t, int64(523+871), job.CostLedger.TotalTokens)
	// Sonnet at $3/$15 per million tokens.
	require.InDelta(t, (523*3.0+871*15.0)/1e6, job.CostLedger.ActualCostUsd, 1e-12)
	require.Equal(t, job.WorkInvoice.AmountSats, job.CostLedger.ChargedSats)
}

func TestFullFlowWithOpenAICompatible(t *testing.T) {
	t.Parallel()
	fake := openaitest.New(t)
	fake.Accept("Fine by me.")
	fake.WorkReply("Here is your answer from a local model.", 77, 133)
	in := setup(t, options{engine: "sqlite", agent: fake.NewAgent(t)})

	job := runPaidJob(t, in, "Explain hold invoices", func(h string) { in.pay(t, h) })
	require.Equal(t, openaitest.DefaultModel, *job.EvalModel)
	require.Equal(t, openaitest.DefaultModel, job.PricingBreakdown.Model)
	require.Equal(t, "Here is your answer from a local model.", *job.Result)
	require.Equal(t, int64(77), job.CostLedger.ActualInputTokens)
	require.Equal(t, int64(133), job.CostLedger.ActualOutputTokens)
	require.Equal(t, int64(210), job.CostLedger.TotalTokens)
	require.False(t, *job.CostLedger.TokensEstimated, "the server reported usage")
}

func TestAgentErrorReachesJobAndReturnsPayment(t *testing.T) {
	t.Parallel()
	fake := anthropictest.New(t)
	fake.Accept("ok")
	cfg := fake.Config()
	cfg.MaxRetries = 2
	agent, err := anthropic.New(cfg)
	require.NoError(t, err)
	in := setup(t, options{engine: "sqlite", agent: agent})
	created := in.createJob(t, "this will meet an overloaded API")
	id := created.JobId.String()
	in.pay(t, created.EvalInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobAwaitingWorkPayment)
	// The next three calls (the work and both retries) find the API overloaded.
	fake.Enqueue(anthropictest.Overloaded(), anthropictest.Overloaded(), anthropictest.Overloaded())
	in.pay(t, in.getJob(t, id).WorkInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobFailed)
	require.Eventually(t, func() bool {
		return *in.getJob(t, id).WorkInvoice.Status == api.InvoiceStatusCancelled
	}, 10*time.Second, 20*time.Millisecond, "the held work payment goes back to the buyer")
	job := in.getJob(t, id)
	require.Contains(t, *job.ErrorMessage, "work failed: anthropic: overloaded (529) after 3 attempts")
	require.NotContains(t, *job.ErrorMessage, fake.APIKey)
}

func TestDemoUsesWorkModelWithOutputCap(t *testing.T) {
	t.Parallel()
	fake := anthropictest.New(t)
	fake.WorkReply("demo answer", 12, 34)
	in := setup(t, options{engine: "sqlite", agent: fake.NewAgent(t), demoMaxTokens: 256})
	resp, err := in.client.RunDemoWithResponse(context.Background(), &api.RunDemoParams{Request: "Say hi"})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
	require.Equal(t, "demo answer", resp.JSON200.Result)
	require.Equal(t, fake.Config().WorkModel, *resp.JSON200.Model)
	ex := fake.Exchanges()
	require.Len(t, ex, 1)
	require.Equal(t, fake.Config().WorkModel, ex[0].Model)
	require.Equal(t, int64(256), ex[0].MaxTokens, "DEMO_MAX_OUTPUT_TOKENS caps the demo")
}

// lnbitsInstance runs the service on the fake LNbits, which cannot hold
// invoices: fees kept for undelivered work become refunds.
func lnbitsInstance(t *testing.T) (*instance, *lnbitstest.Fake) {
	t.Helper()
	fake := lnbitstest.New(t)
	ln, err := lnbits.New(lnbits.Config{URL: fake.URL, InvoiceKey: fake.InvoiceKey, AdminKey: fake.AdminKey, PayWait: 200 * time.Millisecond})
	require.NoError(t, err)
	return setup(t, options{engine: "sqlite", lightning: ln}), fake
}

func markPaid(t *testing.T, fake *lnbitstest.Fake, hash string) {
	t.Helper()
	h, err := timmy.ParsePaymentHash(hash)
	require.NoError(t, err)
	fake.MarkPaid(h)
}

func TestFullFlowOnLNbits(t *testing.T) {
	t.Parallel()
	in, fake := lnbitsInstance(t)
	job := runPaidJob(t, in, "a job paid through LNbits", func(h string) { markPaid(t, fake, h) })
	require.False(t, *job.WorkInvoice.Hold)
	require.Equal(t, api.InvoiceStatusSettled, *job.WorkInvoice.Status)
	require.Nil(t, job.Refund)
}

// TestLNbitsRefundIsPaidOnce: a job whose work failed after payment owes a
// refund; 20 concurrent claims with the buyer's invoice pay it exactly once.
func TestLNbitsRefundIsPaidOnce(t *testing.T) {
	t.Parallel()
	in, fake := lnbitsInstance(t)
	created := in.createJob(t, "this will [fail] after payment")
	id := created.JobId.String()
	markPaid(t, fake, created.EvalInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobAwaitingWorkPayment)
	work := in.getJob(t, id).WorkInvoice
	markPaid(t, fake, work.PaymentHash)
	in.waitState(t, id, timmy.JobFailed)
	var job *api.Job
	require.Eventually(t, func() bool {
		job = in.getJob(t, id)
		return job.Refund != nil
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, api.Owed, job.Refund.State)
	require.Equal(t, work.AmountSats, job.Refund.AmountSats, "the work fee is owed; the eval fee bought an evaluation")
	require.Equal(t, work.AmountSats, *job.RefundOwedSats)

	// A claim for the wrong amount is refused and changes nothing.
	status, msg, _ := do(t, in, "POST", "/api/jobs/"+id+"/refund",
		strings.NewReader(`{"paymentRequest": "`+fake.BuyerInvoice(timmy.Sats(work.AmountSats+1))+`"}`), nil)
	require.Equal(t, 400, status)
	require.Contains(t, msg, "exactly")

	bolt11 := fake.BuyerInvoice(timmy.Sats(work.AmountSats))
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := in.client.ClaimRefundWithResponse(context.Background(), created.JobId, api.ClaimRefundJSONRequestBody{PaymentRequest: bolt11})
			require.NoError(t, err)
			statuses[i] = resp.StatusCode()
		}()
	}
	wg.Wait()
	for _, s := range statuses {
		require.Equal(t, http.StatusOK, s, "repeating the same claim is idempotent: %v", statuses)
	}
	require.Eventually(t, func() bool { return in.getJob(t, id).Refund.State == api.Paid }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, fake.Payments(), 1, "the refund was paid exactly once")
	require.Equal(t, timmy.Sats(work.AmountSats), fake.Payments()[0].AmountSats)

	// Once paid, another invoice is refused.
	status, msg, _ = do(t, in, "POST", "/api/jobs/"+id+"/refund",
		strings.NewReader(`{"paymentRequest": "`+fake.BuyerInvoice(timmy.Sats(work.AmountSats))+`"}`), nil)
	require.Equal(t, 409, status)
	require.Contains(t, msg, "already paid")
}

// TestLatePaymentBecomesRefund: a payment that lands after its job expired
// never starts the work; it becomes a refund.
func TestLatePaymentBecomesRefund(t *testing.T) {
	t.Parallel()
	in, fake := lnbitsInstance(t)
	created := in.createJob(t, "too late")
	id := created.JobId.String()
	later := func() time.Time { return time.Now().Add(20 * time.Minute) }
	in.jobs.SetClock(later)
	in.jobs.ReconcileSoon()
	in.waitState(t, id, timmy.JobExpired)

	markPaid(t, fake, created.EvalInvoice.PaymentHash)
	in.jobs.ReconcileSoon()
	require.Eventually(t, func() bool {
		j := in.getJob(t, id)
		return j.Refund != nil && j.Refund.AmountSats == created.EvalInvoice.AmountSats
	}, 10*time.Second, 20*time.Millisecond)
	events, err := in.db.JobEvents(context.Background(), id)
	require.NoError(t, err)
	require.Len(t, events, 2, "created, then expired: the late payment started nothing")
	require.Equal(t, api.JobStateExpired, in.getJob(t, id).State)
}

func TestRefundClaimOnJobThatOwesNothing(t *testing.T) {
	t.Parallel()
	in, fake := lnbitsInstance(t)
	created := in.createJob(t, "fine job")
	status, msg, _ := do(t, in, "POST", "/api/jobs/"+created.JobId.String()+"/refund",
		strings.NewReader(`{"paymentRequest": "`+fake.BuyerInvoice(10)+`"}`), nil)
	require.Equal(t, 409, status)
	require.Contains(t, msg, "owes no refund")
	status, msg, _ = do(t, in, "POST", "/api/jobs/"+created.JobId.String()+"/refund", strings.NewReader(`{"paymentRequest": "lnbc1garbage"}`), nil)
	require.Equal(t, 409, status, msg)
}

// failedLNbitsJob runs a job on the fake LNbits whose work fails after
// payment, and returns it once it owes its work fee back.
func failedLNbitsJob(t *testing.T, in *instance, fake *lnbitstest.Fake) *api.Job {
	t.Helper()
	created := in.createJob(t, "this will [fail] after payment")
	id := created.JobId.String()
	markPaid(t, fake, created.EvalInvoice.PaymentHash)
	in.waitState(t, id, timmy.JobAwaitingWorkPayment)
	markPaid(t, fake, in.getJob(t, id).WorkInvoice.PaymentHash)
	var job *api.Job
	require.Eventually(t, func() bool {
		job = in.getJob(t, id)
		return job.Refund != nil
	}, 10*time.Second, 20*time.Millisecond)
	return job
}

// TestRefundPaymentIsTrackedToItsEnd: a refund payment still in flight when
// the claim returns is followed by the reconcile; one that fails returns the
// refund to owed, and a new claim pays it.
func TestRefundPaymentIsTrackedToItsEnd(t *testing.T) {
	t.Parallel()
	in, fake := lnbitsInstance(t)
	job := failedLNbitsJob(t, in, fake)
	amount := timmy.Sats(job.Refund.AmountSats)

	fake.SetPayMode(lnbitstest.PayPending)
	first := fake.BuyerInvoice(amount)
	resp, err := in.client.ClaimRefundWithResponse(context.Background(), job.JobId, api.ClaimRefundJSONRequestBody{PaymentRequest: first})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
	require.Equal(t, api.Pending, resp.JSON200.State)

	// The payment fails in the end: the refund is owed again, with the reason.
	hash, err := timmy.ParsePaymentHash(*resp.JSON200.PaymentHash)
	require.NoError(t, err)
	fake.ResolvePayment(hash, false)
	require.Eventually(t, func() bool { return in.getJob(t, job.JobId.String()).Refund.State == api.Owed }, 10*time.Second, 20*time.Millisecond)
	require.NotNil(t, in.getJob(t, job.JobId.String()).Refund.FailureReason)

	// A second claim, pending at first, succeeds later.
	second := fake.BuyerInvoice(amount)
	resp, err = in.client.ClaimRefundWithResponse(context.Background(), job.JobId, api.ClaimRefundJSONRequestBody{PaymentRequest: second})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
	hash, err = timmy.ParsePaymentHash(*resp.JSON200.PaymentHash)
	require.NoError(t, err)
	fake.ResolvePayment(hash, true)
	require.Eventually(t, func() bool { return in.getJob(t, job.JobId.String()).Refund.State == api.Paid }, 10*time.Second, 20*time.Millisecond)
	succeeded := 0
	for _, p := range fake.Payments() {
		if p.Status == "success" {
			succeeded++
		}
	}
	require.Equal(t, 1, succeeded, "exactly one refund payment succeeded")
}

func TestLightningFailureIsAClear502(t *testing.T) {
	t.Parallel()
	in, fake := lnbitsInstance(t)
	fake.FailNext(520, `{"detail": "funding source unreachable", "status": "failed"}`)
	status, msg, _ := do(t, in, "POST", "/api/jobs", strings.NewReader(`{"request": "hello"}`), nil)
	require.Equal(t, 502, status)
	require.Contains(t, msg, "lnbits: funding source error (520)")
	require.Contains(t, msg, "funding source unreachable")
	counts, err := in.db.CountJobsByState(context.Background())
	require.NoError(t, err)
	require.Empty(t, counts, "no job without an invoice")
}

// TestLedgerSaysWhenTokensAreEstimated: a server that sends no usage still
// gets its work delivered, and the ledger says its counts are estimates.
func TestLedgerSaysWhenTokensAreEstimated(t *testing.T) {
	t.Parallel()
	fake := openaitest.New(t)
	fake.Accept("ok")
	fake.WorkReply("twelve bytes", 1, 1)
	fake.OmitUsage(true)
	in := setup(t, options{engine: "sqlite", agent: fake.NewAgent(t)})
	job := runPaidJob(t, in, "a server without usage", func(h string) { in.pay(t, h) })
	require.True(t, *job.CostLedger.TokensEstimated)
	require.Equal(t, int64(3), job.CostLedger.ActualOutputTokens, "twelve bytes at four bytes a token")
}
