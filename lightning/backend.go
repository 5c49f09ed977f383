package lightning

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	timmy "github.com/timmyhq/timmy"
)

// Defaults for the durations every backend's Config has, used when a field
// is zero. They are shared because they bound what the service promises a
// buyer rather than anything particular to a node: how long one request may
// take, how long a refund may spend routing, and how long PayInvoice waits
// for a final answer before reporting the payment pending.
const (
	DefaultTimeout    = 15 * time.Second
	DefaultPayTimeout = 60 * time.Second
	DefaultPayWait    = 5 * time.Second
)

// ExpiryGrace is how long past its BOLT11 expiry an unpaid invoice is still
// reported open. It absorbs clock skew between Timmy and the Lightning
// node, which could otherwise still accept a payment Timmy has written off.
const ExpiryGrace = 30 * time.Second

// SetDefaultDurations replaces each of a backend Config's durations that is
// zero or negative with its default (DefaultTimeout, DefaultPayTimeout,
// DefaultPayWait), so every backend reads an unset field the same way.
func SetDefaultDurations(timeout, payTimeout, payWait *time.Duration) {
	for _, f := range [...]struct {
		d   *time.Duration
		def time.Duration
	}{{timeout, DefaultTimeout}, {payTimeout, DefaultPayTimeout}, {payWait, DefaultPayWait}} {
		if *f.d <= 0 {
			*f.d = f.def
		}
	}
}

// Lapsed reports whether an unpaid invoice that expired at expiresAt is, at
// now, also past ExpiryGrace. A backend then reports it expired without
// waiting for its node to say so, and never sooner.
func Lapsed(expiresAt, now time.Time) bool {
	return now.After(expiresAt.Add(ExpiryGrace))
}

// CheckInvoiceRequest refuses an invoice request no backend can issue, with
// the same EINVALID error whichever backend is configured.
func CheckInvoiceRequest(req timmy.InvoiceRequest) error {
	if req.AmountSats <= 0 {
		return timmy.Errorf(timmy.EINVALID, "invoice amount must be at least 1 sat")
	}
	return nil
}

// ExpirySeconds is an invoice expiry as the whole seconds nodes take,
// rounded up so an invoice never expires sooner than the service asked.
func ExpirySeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// CheckIssued decodes the BOLT11 invoice a backend's node issued when asked
// for amount sats, and checks it is for exactly that, so a misbehaving node
// cannot make the service sell work for the wrong price. Errors are
// EUNAVAILABLE and name the backend: a bad invoice from the node is the
// node's fault, so the decoder's EINVALID (meant for buyer input) is kept
// out of the error chain. The caller checks the payment hash, which each
// node reports its own way.
func CheckIssued(backend, paymentRequest string, amount timmy.Sats) (timmy.NewInvoice, error) {
	d, err := Decode(paymentRequest)
	if err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("%v: %w", err,
			timmy.Errorf(timmy.EUNAVAILABLE, "%s: returned an invoice that does not decode", backend))
	}
	if d.AmountMsat != amount.Msat() {
		return timmy.NewInvoice{}, timmy.Errorf(timmy.EUNAVAILABLE,
			"%s: issued an invoice for %d msat when %d sats were asked", backend, d.AmountMsat, amount)
	}
	return timmy.NewInvoice{
		PaymentRequest: paymentRequest,
		PaymentHash:    d.PaymentHash,
		AmountSats:     amount,
		ExpiresAt:      d.ExpiresAt,
	}, nil
}

// NewJSONRequest builds a request to a node's REST API. Body, unless nil,
// is sent as JSON, and a JSON answer is asked for explicitly, since LNbits
// renders HTML error pages for browser-like requests. The caller adds its
// node's credentials.
func NewJSONRequest(ctx context.Context, method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}
