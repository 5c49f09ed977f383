package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	agentstub "github.com/timmyhq/timmy/agent/stub"
	"github.com/timmyhq/timmy/internal/metrics"
	"github.com/timmyhq/timmy/jobs"
	"github.com/timmyhq/timmy/lightning/lightningtest"
	"github.com/timmyhq/timmy/lightning/lnbits"
	"github.com/timmyhq/timmy/lightning/lnbits/lnbitstest"
	stubln "github.com/timmyhq/timmy/lightning/stub"
	"github.com/timmyhq/timmy/pricing"
	"github.com/timmyhq/timmy/store"
	"github.com/timmyhq/timmy/store/storetest"
)

// crashyStore fails chosen store calls once, standing in for a process that
// died (or a DB connection that dropped) between two writes.
type crashyStore struct {
	timmy.JobStore
	failPayTransition atomic.Bool // awaiting_*_payment -> working
	failExtendLease   atomic.Bool // every ExtendLease errors while set
}

func (c *crashyStore) TransitionJob(ctx context.Context, t timmy.Transition) (bool, error) {
	if (t.From == timmy.JobAwaitingEvalPayment && t.To == timmy.JobEvaluating) ||
		(t.From == timmy.JobAwaitingWorkPayment && t.To == timmy.JobExecuting) {
		if c.failPayTransition.CompareAndSwap(true, false) {
			return false, errors.New("simulated crash between UpdateInvoiceStatus and TransitionJob")
		}
	}
	return c.JobStore.TransitionJob(ctx, t)
}

func (c *crashyStore) ExtendLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	if c.failExtendLease.Load() {
		return false, errors.New("simulated: database is locked")
	}
	return c.JobStore.ExtendLease(ctx, id, owner, until)
}

type bundle struct {
	db    *store.DB
	st    *crashyStore
	svc   *jobs.Service
	stub  *stubln.Lightning
	execs *atomic.Int64
}

// countingAgent counts Execute calls, and how many run at once across every
// agent sharing the same inFlight and maxInFlight counters.
type countingAgent struct {
	timmy.Agent
	n, inFlight, maxInFlight *atomic.Int64
}

func (a countingAgent) Execute(ctx context.Context, r string, o timmy.ExecuteOptions) (timmy.WorkResult, error) {
	a.n.Add(1)
	now := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for {
		m := a.maxInFlight.Load()
		if now <= m || a.maxInFlight.CompareAndSwap(m, now) {
			break
		}
	}
	return a.Agent.Execute(ctx, r, o)
}

// shared concurrency counters, so replicas' agents can be compared.
var inFlight, maxInFlight atomic.Int64

func setupRun(t *testing.T, db *store.DB, ln timmy.Lightning, agentDelay, lease time.Duration, owner string) *bundle {
	b := &bundle{db: db, st: &crashyStore{JobStore: db}, execs: new(atomic.Int64)}
	if ln == nil {
		var err error
		b.stub, err = stubln.New(db, filepath.Join(t.TempDir(), "k"))
		require.NoError(t, err)
		ln = b.stub
	}
	pricer, err := pricing.New(pricing.DefaultConfig(pricing.FixedPrice{USD: 100000}))
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.svc = jobs.New(b.st, ln, countingAgent{agentstub.New(agentstub.Config{Delay: agentDelay}), b.execs, &inFlight, &maxInFlight}, pricer, jobs.Config{
		ReconcileInterval: 100 * time.Millisecond, ClaimInterval: 20 * time.Millisecond, LeaseDuration: lease, Owner: owner,
	}, log, metrics.New(db))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func state(t *testing.T, db *store.DB, id string) *timmy.Job {
	j, err := db.GetJob(context.Background(), id)
	require.NoError(t, err)
	return j
}

// A process that dies between recording a payment and moving its job leaves
// the move to the next reconcile pass: the stored status, not a change of
// it, drives the transition. Hold invoices (stub), on every engine.
func TestCrashBetweenPaymentAndTransitionIsRecovered(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(string(engine), func(t *testing.T) {
			db := storetest.Open(t, engine)
			b := setupRun(t, db, nil, 10*time.Millisecond, 5*time.Second, "")
			job, err := b.svc.CreateJob(context.Background(), "hello")
			require.NoError(t, err)
			b.st.failPayTransition.Store(true)
			_, err = b.stub.Pay(context.Background(), job.EvalInvoice.PaymentHash)
			require.NoError(t, err)
			b.svc.HintInvoice(job.EvalInvoice.PaymentHash)
			require.Eventually(t, func() bool { return state(t, db, job.ID.String()).State == timmy.JobAwaitingWorkPayment },
				15*time.Second, 20*time.Millisecond, "the paid job moves on after the failed transition")
			require.False(t, b.st.failPayTransition.Load(), "the simulated crash happened")
		})
	}
}

// The same on LNbits, whose plain invoices settle at once: the job still
// runs, so the settled eval fee buys its evaluation.
func TestCrashBetweenPaymentAndTransitionIsRecoveredOnLNbits(t *testing.T) {
	fake := lnbitstest.New(t)
	ln, err := lnbits.New(lnbits.Config{URL: fake.URL, InvoiceKey: fake.InvoiceKey, AdminKey: fake.AdminKey, PayWait: 200 * time.Millisecond})
	require.NoError(t, err)
	db := storetest.Open(t, "sqlite")
	b := setupRun(t, db, ln, 10*time.Millisecond, 5*time.Second, "")
	job, err := b.svc.CreateJob(context.Background(), "hello")
	require.NoError(t, err)
	b.st.failPayTransition.Store(true)
	fake.MarkPaid(job.EvalInvoice.PaymentHash)
	b.svc.ReconcileSoon()

	time.Sleep(2 * time.Second)
	// Even long after the invoice's expiry nothing happens.
	b.svc.SetClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
	time.Sleep(1 * time.Second)
	j := state(t, db, job.ID.String())
	t.Logf("job state=%s eval status=%s resolved=%v refund=%v", j.State, j.EvalInvoice.Status, j.EvalInvoice.Resolved, j.Refund)
	require.True(t, j.State != timmy.JobAwaitingEvalPayment || j.Refund != nil,
		"buyer paid (settled), job neither runs nor owes a refund")
}

// A refund claimed during a backend outage, whose invoice then expires,
// returns to owed once the reconcile finds the payment was never sent and
// cannot be, so the buyer can claim it again with a new invoice.
type outageLN struct {
	*lnbits.Client
	down atomic.Bool
}

func (o *outageLN) PayInvoice(ctx context.Context, pr string, amt timmy.Sats) (timmy.Payment, error) {
	if o.down.Load() {
		return timmy.Payment{}, timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: POST /api/v1/payments: connection refused")
	}
	return o.Client.PayInvoice(ctx, pr, amt)
}

func TestRefundClaimedDuringOutageReturnsToOwed(t *testing.T) {
	fake := lnbitstest.New(t)
	c, err := lnbits.New(lnbits.Config{URL: fake.URL, InvoiceKey: fake.InvoiceKey, AdminKey: fake.AdminKey, PayWait: 200 * time.Millisecond})
	require.NoError(t, err)
	ln := &outageLN{Client: c}
	db := storetest.Open(t, "sqlite")
	b := setupRun(t, db, ln, 10*time.Millisecond, 5*time.Second, "")
	job, err := b.svc.CreateJob(context.Background(), "this will [fail] after payment")
	require.NoError(t, err)
	id := job.ID.String()
	fake.MarkPaid(job.EvalInvoice.PaymentHash)
	require.Eventually(t, func() bool { return state(t, db, id).State == timmy.JobAwaitingWorkPayment }, 10*time.Second, 20*time.Millisecond)
	fake.MarkPaid(state(t, db, id).WorkInvoice.PaymentHash)
	require.Eventually(t, func() bool { return state(t, db, id).Refund != nil }, 10*time.Second, 20*time.Millisecond)
	amount := state(t, db, id).Refund.AmountSats

	ln.down.Store(true)
	short := fake.BuyerInvoiceWith(lightningtest.InvoiceOptions{AmountMsat: amount.Msat(), Expiry: 2 * time.Second, Memo: "refund"})
	r, err := b.svc.ClaimRefund(context.Background(), id, short)
	require.NoError(t, err)
	require.Equal(t, timmy.RefundPending, r.State)
	time.Sleep(2500 * time.Millisecond) // the buyer's invoice expires during the outage
	ln.down.Store(false)
	// The reconcile waits out the claim's own payment attempt before it
	// tries again; move past that.
	b.svc.SetClock(func() time.Time { return time.Now().Add(5 * time.Minute) })
	require.Eventually(t, func() bool { return state(t, db, id).Refund.State == timmy.RefundOwed }, 10*time.Second, 20*time.Millisecond,
		"a payment refused before anything was sent returns the refund to owed")

	j := state(t, db, id)
	t.Logf("refund after outage: %+v", *j.Refund)
	_, err = b.svc.ClaimRefund(context.Background(), id, fake.BuyerInvoice(amount))
	require.NoError(t, err, "buyer cannot re-claim: refund stuck %s forever", j.Refund.State)
}

// A worker whose heartbeat cannot extend its lease stops before the lease
// lapses, so the replica that claims the job next never runs alongside it.
// (Not parallel: it reads the package's shared concurrency counters.)
func TestLeaseLapseNeverRunsTwiceAtOnce(t *testing.T) {
	maxInFlight.Store(0)
	db, dsn := storetest.OpenWithDSN(t, "sqlite")
	a := setupRun(t, db, nil, 3*time.Second, 600*time.Millisecond, "A")
	job, err := a.svc.CreateJob(context.Background(), "slow work")
	require.NoError(t, err)
	id := job.ID.String()
	_, err = a.stub.Pay(context.Background(), job.EvalInvoice.PaymentHash)
	require.NoError(t, err)
	a.svc.HintInvoice(job.EvalInvoice.PaymentHash)
	require.Eventually(t, func() bool { return state(t, db, id).State == timmy.JobAwaitingWorkPayment }, 15*time.Second, 20*time.Millisecond)
	a.st.failExtendLease.Store(true) // A's heartbeats now fail (e.g. SQLITE_BUSY)
	_, err = a.stub.Pay(context.Background(), state(t, db, id).WorkInvoice.PaymentHash)
	require.NoError(t, err)
	a.svc.HintInvoice(state(t, db, id).WorkInvoice.PaymentHash)
	require.Eventually(t, func() bool { return a.execs.Load() == 1 }, 5*time.Second, 10*time.Millisecond)

	db2 := storetest.Reopen(t, "sqlite", dsn)
	bb := setupRun(t, db2, nil, 3*time.Second, 600*time.Millisecond, "B")
	require.Eventually(t, func() bool { return bb.execs.Load() >= 1 }, 10*time.Second, 10*time.Millisecond,
		"B takes the job over once A gave it up")
	t.Logf("A executes=%d B executes=%d", a.execs.Load(), bb.execs.Load())
	require.Equal(t, int64(1), maxInFlight.Load(), "the agent never ran twice at once")
}

type lookupOutageLN struct {
	*lnbits.Client
	down atomic.Bool
}

func (o *lookupOutageLN) LookupInvoice(ctx context.Context, h timmy.PaymentHash) (timmy.InvoiceStatus, error) {
	if o.down.Load() {
		return "", timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: GET: connection refused")
	}
	return o.Client.LookupInvoice(ctx, h)
}

// An expired plain invoice is given up on only after a lookup that
// succeeded past the late-payment window: a payment LNbits recorded while
// it was unreachable still becomes a refund.
func TestLateWindowClosesOnlyAfterConfirmation(t *testing.T) {
	fake := lnbitstest.New(t)
	c, err := lnbits.New(lnbits.Config{URL: fake.URL, InvoiceKey: fake.InvoiceKey, AdminKey: fake.AdminKey, PayWait: 200 * time.Millisecond})
	require.NoError(t, err)
	ln := &lookupOutageLN{Client: c}
	db := storetest.Open(t, "sqlite")
	b := setupRun(t, db, ln, 10*time.Millisecond, 5*time.Second, "")
	job, err := b.svc.CreateJob(context.Background(), "hello")
	require.NoError(t, err)
	id := job.ID.String()
	b.svc.SetClock(func() time.Time { return time.Now().Add(20 * time.Minute) })
	require.Eventually(t, func() bool { return state(t, db, id).State == timmy.JobExpired }, 10*time.Second, 20*time.Millisecond)
	ln.down.Store(true)                        // LNbits unreachable from Timmy...
	fake.MarkPaid(job.EvalInvoice.PaymentHash) // ...while the (late) payment is recorded there
	time.Sleep(500 * time.Millisecond)
	b.svc.SetClock(func() time.Time { return time.Now().Add(2 * time.Hour) }) // window over
	time.Sleep(500 * time.Millisecond)
	ln.down.Store(false)
	time.Sleep(1 * time.Second)
	j := state(t, db, id)
	t.Logf("eval status=%s resolved=%v refund=%v", j.EvalInvoice.Status, j.EvalInvoice.Resolved, j.Refund)
	require.NotNil(t, j.Refund, "payment recorded by LNbits is never refunded")
}
