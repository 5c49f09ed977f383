//go:build itest

package regtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Payment statuses as lnd's REST API spells them.
const (
	PaymentInitiated = "INITIATED"
	PaymentInFlight  = "IN_FLIGHT"
	PaymentSucceeded = "SUCCEEDED"
	PaymentFailed    = "FAILED"
)

const (
	// payTimeoutSeconds is SendPaymentV2's timeout_seconds: how long lnd
	// keeps trying new routes. It does not cut short an HTLC already
	// held by a hold invoice; that payment stays IN_FLIGHT until the
	// receiver settles or cancels.
	payTimeoutSeconds = 60

	// payFeeLimitSats caps routing fees. The harness's payments go over
	// a direct channel and pay no fee, but lnd treats a missing limit
	// as zero, so some limit must be sent.
	payFeeLimitSats = 100

	// paymentStreamTimeout bounds how long PayInvoiceAsync keeps
	// listening for updates, so a forgotten hold invoice cannot hang a
	// test forever.
	paymentStreamTimeout = 10 * time.Minute
)

// PaymentResult is a payment's state as reported by /v2/router/send.
type PaymentResult struct {
	// PaymentHash and Preimage are hex (lnd's Payment message uses hex
	// strings, unlike Invoice, which uses base64 bytes). Preimage is
	// all zeros until the payment succeeds.
	PaymentHash string `json:"payment_hash"`
	Preimage    string `json:"payment_preimage"`
	// Status is one of the Payment* constants.
	Status string `json:"status"`
	// FailureReason is FAILURE_REASON_NONE unless Status is FAILED,
	// e.g. FAILURE_REASON_INCORRECT_PAYMENT_DETAILS after a cancel.
	FailureReason string `json:"failure_reason"`
	ValueSat      int64  `json:"value_sat,string"`
	FeeSat        int64  `json:"fee_sat,string"`
	PaymentIndex  uint64 `json:"payment_index,string"`
}

// Final reports whether the payment reached SUCCEEDED or FAILED.
func (r PaymentResult) Final() bool {
	return r.Status == PaymentSucceeded || r.Status == PaymentFailed
}

// Payment is an in-progress payment started by PayInvoiceAsync. Its
// updates are read in the background until a final status arrives.
type Payment struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every update
	latest  PaymentResult
	err     error
}

// PayInvoice pays a BOLT 11 invoice and waits for the final result. A
// payment that fails is reported as a PaymentResult with Status FAILED and
// a nil error; the error is for transport and API failures. Do not use it
// for hold invoices unless something else will settle or cancel them, since
// it waits for the final status; use PayInvoiceAsync instead.
func (n *Node) PayInvoice(ctx context.Context, bolt11 string) (PaymentResult, error) {
	p, err := n.PayInvoiceAsync(ctx, bolt11)
	if err != nil {
		return PaymentResult{}, err
	}
	defer p.Close()
	return p.Wait(ctx)
}

// PayInvoiceAsync starts paying a BOLT 11 invoice through POST
// /v2/router/send and returns as soon as lnd has accepted the request (its
// first update, normally IN_FLIGHT). The updates keep being read in the background for at most
// paymentStreamTimeout, independently of ctx, which only bounds the
// start; call Close when done to release the stream early.
func (n *Node) PayInvoiceAsync(ctx context.Context, bolt11 string) (*Payment, error) {
	req := map[string]any{
		"payment_request": bolt11,
		"timeout_seconds": payTimeoutSeconds,
		"fee_limit_sat":   strconv.Itoa(payFeeLimitSats),
	}

	streamCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), paymentStreamTimeout)
	s, err := n.OpenStream(streamCtx, http.MethodPost, "/v2/router/send", req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("pay invoice from %s: %w", n.Name, err)
	}
	p := &Payment{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	go p.read(s)

	// lnd answers with the payment's initial state right away, or with an
	// error (bad invoice, already paid, ...) that belongs to the caller.
	for {
		p.mu.Lock()
		latest, err, changed := p.latest, p.err, p.changed
		p.mu.Unlock()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("pay invoice from %s: %w", n.Name, err)
		}
		if latest.Status != "" {
			return p, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			p.Close()
			return nil, fmt.Errorf("pay invoice from %s: wait for first update: %w", n.Name, ctx.Err())
		}
	}
}

// read consumes payment updates until a final status, an error, or the end
// of the stream.
func (p *Payment) read(s *Stream) {
	defer close(p.done)
	defer s.Close()
	for {
		var r PaymentResult
		err := s.Next(&r)
		if errors.Is(err, io.EOF) {
			err = errors.New("payment stream ended before a final status")
		}
		p.mu.Lock()
		if err != nil {
			p.err = err
		} else {
			p.latest = r
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil || r.Final() {
			return
		}
	}
}

// Latest returns the most recent update, or the zero value if none arrived
// yet.
func (p *Payment) Latest() PaymentResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest
}

// WaitStatus waits until the payment's latest update has the given status
// (e.g. IN_FLIGHT once the HTLC is locked in at a hold invoice), the
// payment ends in another final status, the stream fails, or ctx ends.
func (p *Payment) WaitStatus(ctx context.Context, status string) (PaymentResult, error) {
	for {
		p.mu.Lock()
		latest, err, changed := p.latest, p.err, p.changed
		p.mu.Unlock()
		if latest.Status == status {
			return latest, nil
		}
		if latest.Final() {
			return latest, fmt.Errorf("wait for payment status %s: payment ended %s (%s)", status, latest.Status, latest.FailureReason)
		}
		if err != nil {
			return latest, fmt.Errorf("wait for payment status %s: %w", status, err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return latest, fmt.Errorf("wait for payment status %s (last %q): %w", status, latest.Status, ctx.Err())
		}
	}
}

// Wait blocks until the payment is SUCCEEDED or FAILED and returns the
// final update. Like PayInvoice, a FAILED payment is not an error.
func (p *Payment) Wait(ctx context.Context) (PaymentResult, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		latest := p.Latest()
		return latest, fmt.Errorf("wait for payment %s (last %q): %w", latest.PaymentHash, latest.Status, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.latest.Final() {
		return p.latest, nil
	}
	return p.latest, fmt.Errorf("wait for payment %s: %w", p.latest.PaymentHash, p.err)
}

// Close stops listening for updates. The payment itself continues in lnd
// and can still be observed via the payee's invoice.
func (p *Payment) Close() {
	p.cancel()
	<-p.done
}
