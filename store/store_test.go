package store_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning/stub"
	"github.com/timmyhq/timmy/store"
	"github.com/timmyhq/timmy/store/storetest"
)

// The conformance suite: every test runs on every engine available.
func TestStore(t *testing.T) {
	t.Parallel()
	tests := map[string]func(t *testing.T, db *store.DB){
		"JobRoundTrip":              testJobRoundTrip,
		"TransitionHasOneWinner":    testTransitionHasOneWinner,
		"ClaimHasOneWinner":         testClaimHasOneWinner,
		"LapsedLeaseIsReclaimed":    testLapsedLeaseIsReclaimed,
		"InvoiceStatusAndResolve":   testInvoiceStatusAndResolve,
		"RefundOwedOnce":            testRefundOwedOnce,
		"RefundClaimHasOneWinner":   testRefundClaimHasOneWinner,
		"DemoCountsAreExact":        testDemoCountsAreExact,
		"CursorNeverMovesBackwards": testCursorNeverMovesBackwards,
		"StubInvoices":              testStubInvoices,
		"MigrateIsIdempotent":       testMigrateIsIdempotent,
		"UnknownJobIsNotFound":      testUnknownJobIsNotFound,
	}
	for _, engine := range storetest.Engines(t) {
		for name, fn := range tests {
			t.Run(string(engine)+"/"+name, func(t *testing.T) {
				t.Parallel()
				fn(t, storetest.Open(t, engine))
			})
		}
	}
}

var t0 = time.UnixMilli(1_760_000_000_000).UTC()

func newInvoice(jobID string, kind timmy.InvoiceKind, amount timmy.Sats) *timmy.Invoice {
	var p timmy.Preimage
	copy(p[:], uuid.New().String())
	return &timmy.Invoice{
		PaymentHash: sha256.Sum256(p[:]), JobID: jobID, Kind: kind, PaymentRequest: "lnbcrt1" + jobID,
		AmountSats: amount, Status: timmy.InvoiceOpen, Hold: true, Preimage: &p,
		ExpiresAt: t0.Add(time.Hour), CreatedAt: t0,
	}
}

func createJob(t *testing.T, db *store.DB) (*timmy.Job, *timmy.Invoice) {
	t.Helper()
	job := &timmy.Job{ID: uuid.New(), Request: "write a haiku", State: timmy.JobAwaitingEvalPayment, CreatedAt: t0, UpdatedAt: t0}
	inv := newInvoice(job.ID.String(), timmy.InvoiceEval, 10)
	require.NoError(t, db.CreateJob(context.Background(), job, inv))
	return job, inv
}

func move(t *testing.T, db *store.DB, id string, from, to timmy.JobState) {
	t.Helper()
	won, err := db.TransitionJob(context.Background(), timmy.Transition{JobID: id, From: from, To: to, At: t0})
	require.NoError(t, err)
	require.True(t, won, "%s→%s", from, to)
}

func testJobRoundTrip(t *testing.T, db *store.DB) {
	ctx := context.Background()
	job, eval := createJob(t, db)
	got, err := db.GetJob(ctx, job.ID.String())
	require.NoError(t, err)
	require.Equal(t, job.Request, got.Request)
	require.Equal(t, timmy.JobAwaitingEvalPayment, got.State)
	require.Equal(t, eval.PaymentHash, got.EvalInvoice.PaymentHash)
	require.Equal(t, *eval.Preimage, *got.EvalInvoice.Preimage)
	require.True(t, got.EvalInvoice.Hold)
	require.Equal(t, eval.ExpiresAt, got.EvalInvoice.ExpiresAt)
	require.Nil(t, got.WorkInvoice)

	move(t, db, job.ID.String(), timmy.JobAwaitingEvalPayment, timmy.JobEvaluating)
	work := newInvoice(job.ID.String(), timmy.InvoiceWork, 1234)
	quote := timmy.Quote{Model: "m", EstimatedInputTokens: 10, EstimatedOutputTokens: 20, EstimatedCostUSD: 0.01,
		InfraCostUSD: 0.002, MarginPct: 25, BTCPriceUSD: 61000, BTCPriceSource: "kraken", AmountSats: 1234}
	reason, model := "fine", "haiku"
	won, err := db.TransitionJob(ctx, timmy.Transition{JobID: job.ID.String(), From: timmy.JobEvaluating, To: timmy.JobAwaitingWorkPayment,
		At: t0.Add(time.Second), Reason: &reason, EvalModel: &model, EvaluatedAt: &t0, Quote: &quote, WorkInvoice: work})
	require.NoError(t, err)
	require.True(t, won)
	move(t, db, job.ID.String(), timmy.JobAwaitingWorkPayment, timmy.JobExecuting)
	result := "done"
	ledger := timmy.CostLedger{Model: "sonnet", ActualInputTokens: 7, ActualOutputTokens: 9, ActualCostUSD: 0.003, ChargedSats: 1234, BTCPriceUSD: 61000, TokensEstimated: true}
	won, err = db.TransitionJob(ctx, timmy.Transition{JobID: job.ID.String(), From: timmy.JobExecuting, To: timmy.JobComplete, At: t0, Result: &result, Ledger: &ledger})
	require.NoError(t, err)
	require.True(t, won)

	got, err = db.GetJob(ctx, job.ID.String())
	require.NoError(t, err)
	require.Equal(t, timmy.JobComplete, got.State)
	require.Equal(t, "done", got.Result)
	require.Equal(t, "fine", got.Reason)
	require.Equal(t, "haiku", got.EvalModel)
	require.Equal(t, &quote, got.Quote)
	require.Equal(t, &ledger, got.Ledger)
	require.Equal(t, int64(16), got.Ledger.TotalTokens())
	require.Equal(t, work.PaymentHash, got.WorkInvoice.PaymentHash)
	require.Equal(t, t0, *got.EvaluatedAt)

	events, err := db.JobEvents(ctx, job.ID.String())
	require.NoError(t, err)
	var path []timmy.JobState
	for _, e := range events {
		path = append(path, e.To)
	}
	require.Equal(t, []timmy.JobState{timmy.JobAwaitingEvalPayment, timmy.JobEvaluating, timmy.JobAwaitingWorkPayment, timmy.JobExecuting, timmy.JobComplete}, path)

	counts, err := db.CountJobsByState(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), counts[timmy.JobComplete])
}

func testTransitionHasOneWinner(t *testing.T, db *store.DB) {
	job, _ := createJob(t, db)
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won, err := db.TransitionJob(context.Background(), timmy.Transition{JobID: job.ID.String(), From: timmy.JobAwaitingEvalPayment, To: timmy.JobEvaluating, At: t0})
			require.NoError(t, err)
			if won {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1), wins.Load())
	events, err := db.JobEvents(context.Background(), job.ID.String())
	require.NoError(t, err)
	require.Len(t, events, 2, "one creation and exactly one transition")
}

func testClaimHasOneWinner(t *testing.T, db *store.DB) {
	job, _ := createJob(t, db)
	move(t, db, job.ID.String(), timmy.JobAwaitingEvalPayment, timmy.JobEvaluating)
	var winners sync.Map
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("worker-%d", i)
			got, err := db.ClaimJob(context.Background(), owner, t0, t0.Add(time.Minute))
			require.NoError(t, err)
			if got != nil {
				winners.Store(owner, got.ID)
			}
		}()
	}
	wg.Wait()
	n := 0
	winners.Range(func(_, _ any) bool { n++; return true })
	require.Equal(t, 1, n, "exactly one worker claims the job")

	// A transition that names a different owner loses.
	won, err := db.TransitionJob(context.Background(), timmy.Transition{JobID: job.ID.String(), From: timmy.JobEvaluating, To: timmy.JobRejected, Owner: "nobody", At: t0})
	require.NoError(t, err)
	require.False(t, won)
}

func testLapsedLeaseIsReclaimed(t *testing.T, db *store.DB) {
	ctx := context.Background()
	job, _ := createJob(t, db)
	move(t, db, job.ID.String(), timmy.JobAwaitingEvalPayment, timmy.JobEvaluating)
	got, err := db.ClaimJob(ctx, "a", t0, t0.Add(10*time.Second))
	require.NoError(t, err)
	require.NotNil(t, got)
	got, err = db.ClaimJob(ctx, "b", t0.Add(5*time.Second), t0.Add(15*time.Second))
	require.NoError(t, err)
	require.Nil(t, got, "the lease still holds")
	ok, err := db.ExtendLease(ctx, job.ID.String(), "b", t0.Add(time.Hour))
	require.NoError(t, err)
	require.False(t, ok, "only the owner extends a lease")
	got, err = db.ClaimJob(ctx, "b", t0.Add(11*time.Second), t0.Add(30*time.Second))
	require.NoError(t, err)
	require.NotNil(t, got, "a lapsed lease is claimed again")
	ok, err = db.ExtendLease(ctx, job.ID.String(), "a", t0.Add(time.Hour))
	require.NoError(t, err)
	require.False(t, ok, "the old owner lost the lease")
}

func testInvoiceStatusAndResolve(t *testing.T, db *store.DB) {
	ctx := context.Background()
	_, inv := createJob(t, db)
	ok, err := db.UpdateInvoiceStatus(ctx, inv.PaymentHash, []timmy.InvoiceStatus{timmy.InvoiceOpen}, timmy.InvoiceAccepted, t0)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.UpdateInvoiceStatus(ctx, inv.PaymentHash, []timmy.InvoiceStatus{timmy.InvoiceOpen}, timmy.InvoiceAccepted, t0)
	require.NoError(t, err)
	require.False(t, ok, "a repeated payment notice changes nothing")

	list, err := db.ListUnresolvedInvoices(ctx, nil, 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, t0, *list[0].PaidAt)

	ok, err = db.ResolveInvoice(ctx, inv.PaymentHash, timmy.InvoiceSettled)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.ResolveInvoice(ctx, inv.PaymentHash, timmy.InvoiceCancelled)
	require.NoError(t, err)
	require.False(t, ok, "an invoice is resolved once")
	got, err := db.GetInvoice(ctx, inv.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, timmy.InvoiceSettled, got.Status)
	list, err = db.ListUnresolvedInvoices(ctx, nil, 10)
	require.NoError(t, err)
	require.Empty(t, list)
}

func testRefundOwedOnce(t *testing.T, db *store.DB) {
	ctx := context.Background()
	job, inv := createJob(t, db)
	_, err := db.UpdateInvoiceStatus(ctx, inv.PaymentHash, []timmy.InvoiceStatus{timmy.InvoiceOpen}, timmy.InvoiceSettled, t0)
	require.NoError(t, err)
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won, err := db.ResolveInvoiceAsRefund(ctx, inv.PaymentHash, t0)
			require.NoError(t, err)
			if won {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1), wins.Load())
	got, err := db.GetJob(ctx, job.ID.String())
	require.NoError(t, err)
	require.Equal(t, &timmy.Refund{AmountSats: 10, State: timmy.RefundOwed}, got.Refund)
}

func testRefundClaimHasOneWinner(t *testing.T, db *store.DB) {
	ctx := context.Background()
	job, inv := createJob(t, db)
	_, err := db.UpdateInvoiceStatus(ctx, inv.PaymentHash, []timmy.InvoiceStatus{timmy.InvoiceOpen}, timmy.InvoiceSettled, t0)
	require.NoError(t, err)
	_, err = db.ResolveInvoiceAsRefund(ctx, inv.PaymentHash, t0)
	require.NoError(t, err)

	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, won, err := db.ClaimRefund(ctx, job.ID.String(), timmy.RefundClaim{PaymentRequest: "lnbcrt-x", PaymentHash: fmt.Sprintf("%064d", i), AmountSats: 10, At: t0})
			require.NoError(t, err)
			if won {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1), wins.Load())
	got, err := db.GetJob(ctx, job.ID.String())
	require.NoError(t, err)
	require.Equal(t, timmy.RefundPending, got.Refund.State)
	require.Equal(t, timmy.Sats(10), got.Refund.AmountSats)

	// A failed payment returns the refund to owed; a later success pays it.
	ok, err := db.FinishRefund(ctx, job.ID.String(), got.Refund.PaymentHash, false, "no route", t0)
	require.NoError(t, err)
	require.True(t, ok)
	got, _ = db.GetJob(ctx, job.ID.String())
	require.Equal(t, timmy.RefundOwed, got.Refund.State)
	require.Equal(t, "no route", got.Refund.FailureReason)
	_, won, err := db.ClaimRefund(ctx, job.ID.String(), timmy.RefundClaim{PaymentRequest: "lnbcrt-y", PaymentHash: "y", AmountSats: 10, At: t0})
	require.NoError(t, err)
	require.True(t, won)
	ok, err = db.FinishRefund(ctx, job.ID.String(), "y", true, "", t0)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.FinishRefund(ctx, job.ID.String(), "y", true, "", t0)
	require.NoError(t, err)
	require.False(t, ok, "a payment is counted once")
	got, _ = db.GetJob(ctx, job.ID.String())
	require.Equal(t, &timmy.Refund{AmountSats: 10, State: timmy.RefundPaid, PaymentRequest: "lnbcrt-y", PaymentHash: "y"}, got.Refund)
}

func testDemoCountsAreExact(t *testing.T, db *store.DB) {
	ctx := context.Background()
	var wg sync.WaitGroup
	seen := make([]int64, 30)
	for i := range seen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := db.HitDemo(ctx, "203.0.113.9", t0)
			require.NoError(t, err)
			seen[i] = n
		}()
	}
	wg.Wait()
	marks := map[int64]bool{}
	for _, n := range seen {
		marks[n] = true
	}
	require.Len(t, marks, 30, "every call sees a distinct count: %v", seen)
	n, err := db.HitDemo(ctx, "203.0.113.9", t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "a new window starts from one")
	require.NoError(t, db.PruneDemoUsage(ctx, t0.Add(time.Hour)))
	n, err = db.HitDemo(ctx, "203.0.113.9", t0)
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "pruned windows are gone")
}

func testCursorNeverMovesBackwards(t *testing.T, db *store.DB) {
	ctx := context.Background()
	v, err := db.LoadCursor(ctx, "lnd.settle_index")
	require.NoError(t, err)
	require.Zero(t, v)
	require.NoError(t, db.SaveCursor(ctx, "lnd.settle_index", 7))
	require.NoError(t, db.SaveCursor(ctx, "lnd.settle_index", 3))
	v, err = db.LoadCursor(ctx, "lnd.settle_index")
	require.NoError(t, err)
	require.Equal(t, uint64(7), v)
}

func testStubInvoices(t *testing.T, db *store.DB) {
	ctx := context.Background()
	var p timmy.Preimage
	p[0] = 1
	inv := stub.Invoice{PaymentHash: sha256.Sum256(p[:]), PaymentRequest: "lnbcrt1x", AmountSats: 5, Preimage: p, Hold: true,
		Status: timmy.InvoiceOpen, ExpiresAt: t0.Add(time.Minute), CreatedAt: t0}
	require.NoError(t, db.CreateStubInvoice(ctx, inv))
	got, err := db.GetStubInvoice(ctx, inv.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, inv, *got)
	ok, err := db.UpdateStubInvoiceStatus(ctx, inv.PaymentHash, timmy.InvoiceOpen, timmy.InvoiceAccepted, t0)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.UpdateStubInvoiceStatus(ctx, inv.PaymentHash, timmy.InvoiceOpen, timmy.InvoiceAccepted, t0)
	require.NoError(t, err)
	require.False(t, ok)
	_, err = db.GetStubInvoice(ctx, timmy.PaymentHash{})
	require.Equal(t, timmy.ENOTFOUND, timmy.ErrorCode(err))
}

func testMigrateIsIdempotent(t *testing.T, db *store.DB) {
	require.NoError(t, db.Migrate(context.Background()))
	require.NoError(t, db.Migrate(context.Background()))
}

func testUnknownJobIsNotFound(t *testing.T, db *store.DB) {
	_, err := db.GetJob(context.Background(), uuid.New().String())
	require.Equal(t, timmy.ENOTFOUND, timmy.ErrorCode(err))
	_, err = db.GetInvoice(context.Background(), timmy.PaymentHash{1})
	require.Equal(t, timmy.ENOTFOUND, timmy.ErrorCode(err))
}
