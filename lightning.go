package timmy

import (
	"context"
	"time"
)

// Lightning is what the service needs from every Lightning backend: issue an
// invoice and ask about it. Further abilities (hold invoices, push
// notifications, paying refunds) are separate small interfaces that a backend
// may also implement; the service finds them by type assertion.
type Lightning interface {
	// CreateInvoice issues a plain invoice the backend settles on payment.
	CreateInvoice(ctx context.Context, req InvoiceRequest) (NewInvoice, error)
	// LookupInvoice reports the invoice's current state.
	LookupInvoice(ctx context.Context, hash PaymentHash) (InvoiceStatus, error)
}

// InvoiceRequest describes an invoice to issue.
type InvoiceRequest struct {
	AmountSats Sats
	Memo       string
	Expiry     time.Duration
}

// NewInvoice is an invoice a backend just issued.
type NewInvoice struct {
	PaymentRequest string
	PaymentHash    PaymentHash
	AmountSats     Sats
	ExpiresAt      time.Time
	// Preimage is set when the service knows it (hold invoices, the stub).
	Preimage *Preimage
}

// HoldInvoices is implemented by backends that can hold a payment until the
// service decides to take it (settle) or give it back (cancel). With it, a
// buyer's money is never taken for work that was not delivered.
type HoldInvoices interface {
	// CreateHoldInvoice issues an invoice locked to the hash of preimage,
	// which the backend will not settle on its own.
	CreateHoldInvoice(ctx context.Context, req InvoiceRequest, preimage Preimage) (NewInvoice, error)
	// SettleHoldInvoice takes a held payment. Settling an already settled
	// invoice succeeds.
	SettleHoldInvoice(ctx context.Context, preimage Preimage) error
	// CancelHoldInvoice gives a held payment back, or stops an unpaid
	// invoice from being paid. Cancelling an already cancelled invoice
	// succeeds.
	CancelHoldInvoice(ctx context.Context, hash PaymentHash) error
}

// InvoiceNotifier is implemented by backends that can push invoice updates.
// A notification is only a hint: the service confirms it with LookupInvoice,
// and a periodic reconcile catches anything a dropped connection missed.
type InvoiceNotifier interface {
	// NotifyInvoices calls hint with the hash of every invoice whose state
	// may have changed, until ctx ends or the connection fails.
	NotifyInvoices(ctx context.Context, hint func(PaymentHash)) error
}

// Payer is implemented by backends that can pay invoices, which is how
// refunds reach buyers on backends without hold invoices.
type Payer interface {
	// PayInvoice pays a BOLT11 invoice, which must be for exactly
	// amountSats. It returns once the payment has a final result or is
	// known to be in flight.
	PayInvoice(ctx context.Context, paymentRequest string, amountSats Sats) (Payment, error)
	// LookupPayment reports an outgoing payment's state by its hash.
	LookupPayment(ctx context.Context, hash PaymentHash) (Payment, error)
}

// PayerStatus is implemented by backends that can pay only when configured
// to (LNbits needs its admin key). The service asks before recording a
// refund claim it could not pay.
type PayerStatus interface {
	// CanPay reports whether PayInvoice can work at all.
	CanPay() bool
}

// PaymentState is where an outgoing payment is.
type PaymentState string

// The outgoing payment states.
const (
	PaymentPending   PaymentState = "pending"
	PaymentSucceeded PaymentState = "succeeded"
	PaymentFailed    PaymentState = "failed"
)

// Payment is an outgoing payment's state.
type Payment struct {
	Hash          PaymentHash
	State         PaymentState
	FeeSats       Sats
	FailureReason string
}
