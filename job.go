package timmy

import (
	"time"

	"github.com/google/uuid"
)

// JobState is where a job is in its life. The legal moves are:
//
//	awaiting_eval_payment → evaluating → (rejected | awaiting_work_payment)
//	awaiting_work_payment → executing → complete
//
// Any non-final state can move to failed, and a state waiting on an unpaid
// invoice can move to expired.
type JobState string

// The job states, spelled as they appear on the wire.
const (
	JobAwaitingEvalPayment JobState = "awaiting_eval_payment"
	JobEvaluating          JobState = "evaluating"
	JobAwaitingWorkPayment JobState = "awaiting_work_payment"
	JobExecuting           JobState = "executing"
	JobComplete            JobState = "complete"
	JobRejected            JobState = "rejected"
	JobFailed              JobState = "failed"
	JobExpired             JobState = "expired"
)

// AllJobStates lists every state, in the order of a job's life, so metrics
// can report zeros for states no job is in.
var AllJobStates = []JobState{
	JobAwaitingEvalPayment, JobEvaluating, JobAwaitingWorkPayment, JobExecuting,
	JobComplete, JobRejected, JobFailed, JobExpired,
}

// Final reports whether no further transition can leave this state.
func (s JobState) Final() bool {
	switch s {
	case JobComplete, JobRejected, JobFailed, JobExpired:
		return true
	}
	return false
}

// Working reports whether the state is one in which an agent runs, and so
// is claimed by a worker with a lease.
func (s JobState) Working() bool { return s == JobEvaluating || s == JobExecuting }

// Job is one buyer request, with everything needed to show its progress.
type Job struct {
	ID      uuid.UUID
	Request string
	State   JobState

	EvalInvoice *Invoice // always set once the job exists
	WorkInvoice *Invoice // set once the agent accepted and a quote was made

	EvalModel    string // the model that evaluated the request
	Reason       string // why the agent rejected the request
	Result       string // the agent's work
	ErrorMessage string // why the job failed

	Quote  *Quote      // the work fee's breakdown, set with WorkInvoice
	Ledger *CostLedger // the actual cost, set on complete
	Refund *Refund     // money the service owes the buyer, if any

	// EvaluatedAt is when the evaluation produced an answer (a rejection or
	// a quote). The eval fee is kept only if it is set.
	EvaluatedAt *time.Time

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Quote is what the buyer is asked to pay for the work, and why.
type Quote struct {
	Model                 string
	EstimatedInputTokens  int64
	EstimatedOutputTokens int64
	// EstimatedCostUSD is the token cost alone.
	EstimatedCostUSD float64
	// InfraCostUSD is the per-request share of the servers' monthly cost.
	InfraCostUSD   float64
	MarginPct      float64
	BTCPriceUSD    float64
	BTCPriceSource string
	AmountSats     Sats
}

// CostLedger records what the work actually consumed and what was charged.
type CostLedger struct {
	Model              string
	ActualInputTokens  int64
	ActualOutputTokens int64
	ActualCostUSD      float64
	ChargedSats        Sats
	BTCPriceUSD        float64
	// TokensEstimated is true when the backend did not report usage and
	// the token counts are estimates.
	TokensEstimated bool
}

// TotalTokens is input plus output tokens.
func (l CostLedger) TotalTokens() int64 { return l.ActualInputTokens + l.ActualOutputTokens }

// RefundState is where money owed to a buyer is on its way back.
type RefundState string

// The refund states. A refund is owed, then claimed with an invoice from the
// buyer (pending while the payment is in flight), then paid. A payment that
// definitely failed returns the refund to owed so it can be claimed again.
const (
	RefundOwed    RefundState = "owed"
	RefundPending RefundState = "pending"
	RefundPaid    RefundState = "paid"
)

// Refund is money the service owes a buyer because it kept a payment for
// work it did not deliver, on a backend that cannot hold invoices.
type Refund struct {
	AmountSats     Sats
	State          RefundState
	PaymentRequest string // the buyer's invoice, once claimed
	PaymentHash    string
	FailureReason  string // why the last payment attempt failed
}
