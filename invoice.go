package timmy

import "time"

// InvoiceKind says what an invoice pays for.
type InvoiceKind string

// The invoice kinds.
const (
	InvoiceEval InvoiceKind = "eval"
	InvoiceWork InvoiceKind = "work"
)

// InvoiceStatus is the state of an invoice, as the Lightning backend last
// reported it to us.
type InvoiceStatus string

// The invoice statuses. Accepted exists only for hold invoices: the buyer's
// payment is locked in, but the service has not yet taken it.
const (
	InvoiceOpen      InvoiceStatus = "open"
	InvoiceAccepted  InvoiceStatus = "accepted"
	InvoiceSettled   InvoiceStatus = "settled"
	InvoiceCancelled InvoiceStatus = "cancelled"
	InvoiceExpired   InvoiceStatus = "expired"
)

// Paid reports whether the buyer's money has arrived (held or taken).
func (s InvoiceStatus) Paid() bool { return s == InvoiceAccepted || s == InvoiceSettled }

// Invoice is a Lightning invoice the service issued, as stored by the
// service. The payment hash is unique across all invoices.
type Invoice struct {
	PaymentHash    PaymentHash
	JobID          string
	Kind           InvoiceKind
	PaymentRequest string
	AmountSats     Sats
	Status         InvoiceStatus
	// Hold is true for hold invoices, which the service settles or cancels.
	Hold bool
	// Preimage is known for hold invoices (the service made it) and for the
	// stub backend; it is never shown to buyers.
	Preimage *Preimage
	// Resolved is true once the invoice's money has gone where the job's
	// outcome says: settled, cancelled, or recorded as a refund owed.
	Resolved  bool
	ExpiresAt time.Time
	PaidAt    *time.Time
	CreatedAt time.Time
}

// InvoiceAction is what the service must do with a paid invoice, given the
// state of its job.
type InvoiceAction int

// The invoice actions.
const (
	// ActionWait means the job has not yet decided whether it earned the money.
	ActionWait InvoiceAction = iota
	// ActionKeep means the service earned the money: settle a hold invoice.
	ActionKeep
	// ActionReturn means the buyer gets the money back: cancel a hold
	// invoice, or record a refund for an invoice already settled.
	ActionReturn
)

// DecideInvoice tells what to do with a paid invoice given its job. It is a
// pure function so that the settlement watcher, a crash-recovering worker and
// the tests all agree on who gets the money.
func DecideInvoice(job *Job, kind InvoiceKind) InvoiceAction {
	switch kind {
	case InvoiceEval:
		switch job.State {
		case JobAwaitingEvalPayment, JobEvaluating:
			return ActionWait
		}
		// The eval fee buys an evaluation: kept if one was made, returned
		// if the evaluation failed or the job expired before it ran.
		if job.EvaluatedAt != nil {
			return ActionKeep
		}
		return ActionReturn
	case InvoiceWork:
		switch job.State {
		case JobAwaitingWorkPayment, JobExecuting:
			return ActionWait
		case JobComplete:
			return ActionKeep
		}
		return ActionReturn
	}
	return ActionWait
}
