package lnd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// PayInvoice pays a buyer's refund invoice with SendPaymentV2 (POST
// /v2/router/send). The invoice is decoded and checked first: it must be
// for exactly amountSats and not about to expire, or an EINVALID error is
// returned and nothing is paid. The routing fee is capped by FeeLimitSats
// and FeeLimitPPM.
//
// It returns when lnd reports the payment final, or after PayWait with the
// payment pending; lnd keeps routing it (the payment is not cancelable) and
// LookupPayment follows it. Paying an invoice lnd already paid or is paying
// reports that payment instead of paying twice.
func (c *Client) PayInvoice(ctx context.Context, paymentRequest string, amountSats timmy.Sats) (timmy.Payment, error) {
	d, err := lightning.ValidatePayable(paymentRequest, amountSats, c.now())
	if err != nil {
		return timmy.Payment{}, err
	}
	hash := d.PaymentHash
	body := map[string]any{
		"payment_request": paymentRequest,
		"timeout_seconds": max(int32(1), int32(c.cfg.PayTimeout/time.Second)),
		"fee_limit_sat":   strconv.FormatInt(int64(c.feeLimit(amountSats)), 10),
	}
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.openStream(ctx2, http.MethodPost, "/v2/router/send", nil, body, c.cfg.Timeout)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			switch {
			case ae.code == codeAlreadyExists || ae.is(msgAlreadyPaid) || ae.is(msgPaymentInFlight) || ae.is(msgPaymentExists):
				return c.LookupPayment(ctx, hash)
			case ae.is(msgWrongNetwork):
				return timmy.Payment{}, timmy.Errorf(timmy.EINVALID, "the invoice is for a different network than this service's node")
			case ae.is(msgInvoiceExpired):
				return timmy.Payment{}, timmy.Errorf(timmy.EINVALID, "the invoice has expired; make a new one")
			}
		}
		return timmy.Payment{}, fmt.Errorf("lnd send payment %s: %w", hash, err)
	}
	defer s.Close()

	updates := make(chan payment)
	failed := make(chan error, 1)
	go func() {
		for {
			var p payment
			if err := s.next(&p); err != nil {
				failed <- err
				return
			}
			select {
			case updates <- p:
			case <-ctx2.Done():
				return
			}
		}
	}()

	last := timmy.Payment{Hash: hash, State: timmy.PaymentPending}
	wait := time.NewTimer(c.cfg.PayWait)
	defer wait.Stop()
	for {
		select {
		case p := <-updates:
			last = p.timmy(hash)
			if last.State != timmy.PaymentPending {
				return last, nil
			}
		case err := <-failed:
			// The stream ended without a final state. lnd has the payment,
			// so ask it directly.
			p, lerr := c.LookupPayment(ctx, hash)
			if lerr == nil {
				return p, nil
			}
			c.logger.Warn("lnd payment stream ended early", "hash", hash.String(), "err", err, "lookup_err", lerr)
			return last, nil
		case <-wait.C:
			return last, nil
		case <-ctx.Done():
			return last, nil
		}
	}
}

// feeLimit is the larger of FeeLimitSats and FeeLimitPPM of the amount,
// rounded up.
func (c *Client) feeLimit(amount timmy.Sats) timmy.Sats {
	ppm := (int64(amount)*c.cfg.FeeLimitPPM + 999_999) / 1_000_000
	return max(c.cfg.FeeLimitSats, timmy.Sats(ppm))
}

// LookupPayment reports an outgoing payment by its hash, from the first
// update of TrackPaymentV2 (GET /v2/router/track/{hash}), which is the
// payment's current state. A hash lnd never paid is ENOTFOUND.
func (c *Client) LookupPayment(ctx context.Context, hash timmy.PaymentHash) (timmy.Payment, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	s, err := c.openStream(ctx, http.MethodGet, "/v2/router/track/"+b64url(hash), nil, nil, c.cfg.Timeout)
	if err != nil {
		return timmy.Payment{}, fmt.Errorf("lnd track payment %s: %w", hash, err)
	}
	defer s.Close()
	var p payment
	if err := s.next(&p); err != nil {
		return timmy.Payment{}, fmt.Errorf("lnd track payment %s: %w", hash, s.ended(err))
	}
	return p.timmy(hash), nil
}
