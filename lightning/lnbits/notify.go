package lnbits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"

	timmy "github.com/timmyhq/timmy"
)

// How the payment websocket is kept honest: a ping every pingEvery that
// must be answered within pingTimeout, so a connection that died silently
// (a NAT or proxy dropping it) is noticed and reported instead of waiting
// forever.
const (
	pingEvery   = 30 * time.Second
	pingTimeout = 10 * time.Second
)

// pinging is the ping schedule of one client; tests shorten it.
type pinging struct {
	every, timeout time.Duration
}

// NotifyInvoices listens on LNbits' payment websocket,
// /api/v1/ws/{invoice key}, where LNbits sends
// {"wallet_balance": ..., "payment": {Payment model}} whenever a payment of
// the wallet changes. hint is called, from this goroutine, with the
// payment hash of every such message; the service confirms each with
// LookupInvoice, so a spoofed or duplicated message does no harm.
//
// It returns nil when ctx ends, and an error when the socket cannot be
// opened or drops. Reconnecting, and reconciling what was missed meanwhile,
// is the caller's job.
func (c *Client) NotifyInvoices(ctx context.Context, hint func(timmy.PaymentHash)) error {
	u := *c.base
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path += "/api/v1/ws/" + c.cfg.InvoiceKey

	dialCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	conn, resp, err := websocket.Dial(dialCtx, u.String(), &websocket.DialOptions{HTTPClient: c.http})
	cancel()
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// The URL holds the invoice key, and transport errors quote it.
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: open payment websocket: %s", redact(err.Error(), c.cfg.InvoiceKey, c.cfg.AdminKey))
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxBody)

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	pingErr := make(chan error, 1)
	go func() {
		t := time.NewTicker(c.ping.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				pctx, cancel := context.WithTimeout(ctx, c.ping.timeout)
				err := conn.Ping(pctx)
				cancel()
				if err != nil && ctx.Err() == nil {
					pingErr <- err
					conn.CloseNow()
					return
				}
			}
		}
	}()

	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case perr := <-pingErr:
				err = fmt.Errorf("no answer to ping: %w", perr)
			default:
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: payment websocket closed by server (%d %s)", ce.Code, ce.Reason)
			}
			return timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: payment websocket: %s", redact(err.Error(), c.cfg.InvoiceKey, c.cfg.AdminKey))
		}
		if hash, ok := messageHash(data); ok {
			hint(hash)
		} else {
			c.logger.Debug("lnbits websocket message without a payment hash", "bytes", len(data))
		}
	}
}

// messageHash finds the payment hash in a websocket message: under
// "payment" in the wallet channel's messages, or at the top level should a
// version send the bare Payment model.
func messageHash(data []byte) (timmy.PaymentHash, bool) {
	var msg struct {
		PaymentHash string `json:"payment_hash"`
		Payment     *struct {
			PaymentHash string `json:"payment_hash"`
		} `json:"payment"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return timmy.PaymentHash{}, false
	}
	s := msg.PaymentHash
	if msg.Payment != nil && msg.Payment.PaymentHash != "" {
		s = msg.Payment.PaymentHash
	}
	h, err := timmy.ParsePaymentHash(s)
	return h, err == nil
}
