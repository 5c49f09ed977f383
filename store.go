package timmy

import (
	"context"
	"time"
)

// JobStore keeps jobs and their invoices. Every state change is a single
// conditional update that reports whether it won, so that when several
// processes race for the same transition exactly one of them goes on to do
// the side effect that follows.
type JobStore interface {
	// CreateJob stores a new job with its eval invoice, atomically.
	CreateJob(ctx context.Context, job *Job, evalInvoice *Invoice) error
	// GetJob returns a job with its invoices, or ENOTFOUND.
	GetJob(ctx context.Context, id string) (*Job, error)
	// TransitionJob applies t if the job is still in t.From (and, when
	// t.Owner is set, still leased by that owner). It reports whether this
	// call made the change.
	TransitionJob(ctx context.Context, t Transition) (bool, error)
	// ClaimJob leases one job in a working state whose lease is free or
	// lapsed, or returns nil when there is none.
	ClaimJob(ctx context.Context, owner string, now, until time.Time) (*Job, error)
	// ExtendLease pushes the lease of a job this owner holds; false means
	// the lease was lost and the work must stop.
	ExtendLease(ctx context.Context, jobID, owner string, until time.Time) (bool, error)

	// GetInvoice returns an invoice by hash, or ENOTFOUND.
	GetInvoice(ctx context.Context, hash PaymentHash) (*Invoice, error)
	// ListUnresolvedInvoices returns invoices whose money has not yet gone
	// where their job's outcome says, oldest first, starting after the
	// invoice after (nil for the first page).
	ListUnresolvedInvoices(ctx context.Context, after *Invoice, limit int) ([]*Invoice, error)
	// UpdateInvoiceStatus moves an invoice from one of from to to, and
	// reports whether it did. Moving to a paid status records paidAt.
	UpdateInvoiceStatus(ctx context.Context, hash PaymentHash, from []InvoiceStatus, to InvoiceStatus, at time.Time) (bool, error)
	// ResolveInvoice marks an invoice resolved with its final status; it
	// reports false when it was already resolved.
	ResolveInvoice(ctx context.Context, hash PaymentHash, status InvoiceStatus) (bool, error)
	// ResolveInvoiceAsRefund marks a settled invoice resolved and adds its
	// amount to its job's refund, atomically; false when already resolved.
	ResolveInvoiceAsRefund(ctx context.Context, hash PaymentHash, at time.Time) (bool, error)

	// ClaimRefund records the buyer's invoice for a job's owed refund and
	// marks it pending. It returns the refund as it stands after the call,
	// and whether this call made the claim.
	ClaimRefund(ctx context.Context, jobID string, claim RefundClaim) (*Refund, bool, error)
	// FinishRefund records the outcome of a pending refund payment.
	FinishRefund(ctx context.Context, jobID, paymentHash string, succeeded bool, failureReason string, at time.Time) (bool, error)
	// ListPendingRefunds returns jobs whose refund payment is in flight.
	ListPendingRefunds(ctx context.Context, limit int) ([]*Job, error)

	// CountJobsByState counts jobs in each state, for metrics.
	CountJobsByState(ctx context.Context) (map[JobState]int64, error)
}

// Transition is one conditional change of a job's state, with the fields
// that change with it. Nil fields are left as they are. The job's lease is
// always released.
type Transition struct {
	JobID string
	From  JobState
	To    JobState
	// Owner, when set, requires that the job is leased by this owner.
	Owner string
	At    time.Time

	EvalModel    *string
	Reason       *string
	Result       *string
	ErrorMessage *string
	EvaluatedAt  *time.Time
	Quote        *Quote
	Ledger       *CostLedger
	// WorkInvoice is stored in the same transaction as the state change.
	WorkInvoice *Invoice
}

// RefundClaim is a buyer's invoice for the refund a job owes.
type RefundClaim struct {
	PaymentRequest string
	PaymentHash    string
	AmountSats     Sats
	At             time.Time
}

// DemoLimiter counts free demo calls per client in fixed hourly windows, in
// the shared database, so the limit holds across restarts and replicas.
type DemoLimiter interface {
	// HitDemo counts one call by client in the window starting at
	// windowStart and returns the calls counted in that window so far,
	// including this one.
	HitDemo(ctx context.Context, client string, windowStart time.Time) (int64, error)
}
