package lnd_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/macaroon.v2"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/lightning"
	"github.com/timmyhq/timmy/lightning/lightningtest"
	"github.com/timmyhq/timmy/lightning/lnd"
	"github.com/timmyhq/timmy/lightning/lnd/lndtest"
)

type bundle struct {
	ctx     context.Context
	fake    *lndtest.Fake
	client  *lnd.Client
	cursors *lnd.MemoryCursors
}

func setup(t *testing.T, opts ...lndtest.Option) *bundle {
	t.Helper()
	t.Parallel()
	fake := lndtest.New(t, opts...)
	b := &bundle{fake: fake, cursors: lnd.NewMemoryCursors()}
	b.client = b.newClient(t, lnd.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	b.ctx = ctx
	return b
}

// newClient builds a client for the fake, with cfg's non-zero fields.
func (b *bundle) newClient(t *testing.T, cfg lnd.Config) *lnd.Client {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = b.fake.URL
	}
	if cfg.Macaroon == nil {
		cfg.Macaroon = b.fake.Macaroon
	}
	if cfg.TLSCertPEM == nil {
		cfg.TLSCertPEM = b.fake.CertPEM
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.PayWait == 0 {
		cfg.PayWait = 300 * time.Millisecond
	}
	if cfg.Cursors == nil {
		cfg.Cursors = b.cursors
	}
	c, err := lnd.New(cfg)
	require.NoError(t, err)
	return c
}

func (b *bundle) create(t *testing.T, sats timmy.Sats) timmy.NewInvoice {
	t.Helper()
	inv, err := b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: sats, Memo: "eval fee", Expiry: 10 * time.Minute})
	require.NoError(t, err)
	return inv
}

func (b *bundle) createHold(t *testing.T, sats timmy.Sats) (timmy.NewInvoice, timmy.Preimage) {
	t.Helper()
	pre, err := timmy.NewPreimage()
	require.NoError(t, err)
	inv, err := b.client.CreateHoldInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: sats, Memo: "work fee", Expiry: 10 * time.Minute}, pre)
	require.NoError(t, err)
	return inv, pre
}

func (b *bundle) status(t *testing.T, h timmy.PaymentHash) timmy.InvoiceStatus {
	t.Helper()
	st, err := b.client.LookupInvoice(b.ctx, h)
	require.NoError(t, err)
	return st
}

// notifier runs NotifyInvoices in the background and collects its hints.
type notifier struct {
	hints  chan timmy.PaymentHash
	done   chan error
	cancel context.CancelFunc
}

func (b *bundle) notify(t *testing.T, c *lnd.Client) *notifier {
	t.Helper()
	ctx, cancel := context.WithCancel(b.ctx)
	n := &notifier{hints: make(chan timmy.PaymentHash, 100), done: make(chan error, 1), cancel: cancel}
	go func() { n.done <- c.NotifyInvoices(ctx, func(h timmy.PaymentHash) { n.hints <- h }) }()
	t.Cleanup(cancel)
	return n
}

func (n *notifier) next(t *testing.T) timmy.PaymentHash {
	t.Helper()
	select {
	case h := <-n.hints:
		return h
	case err := <-n.done:
		t.Fatalf("NotifyInvoices returned: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no hint")
	}
	return timmy.PaymentHash{}
}

func (n *notifier) none(t *testing.T) {
	t.Helper()
	select {
	case h := <-n.hints:
		t.Fatalf("unexpected hint %s", h)
	case <-time.After(200 * time.Millisecond):
	}
}

func (n *notifier) stop(t *testing.T) error {
	t.Helper()
	n.cancel()
	select {
	case err := <-n.done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyInvoices did not return after cancel")
	}
	return nil
}

func TestCreateInvoice(t *testing.T) {
	b := setup(t)
	before := time.Now()
	inv := b.create(t, 21)
	require.Equal(t, timmy.Sats(21), inv.AmountSats)
	require.Nil(t, inv.Preimage)
	require.WithinDuration(t, before.Add(10*time.Minute), inv.ExpiresAt, 2*time.Second)

	got, ok := b.fake.Invoice(inv.PaymentHash)
	require.True(t, ok)
	require.Equal(t, "eval fee", got.Memo)
	require.Equal(t, timmy.Sats(21), got.AmountSats)
	require.False(t, got.Hold)
	require.Equal(t, timmy.InvoiceOpen, b.status(t, inv.PaymentHash))

	_, err := b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 0})
	lightningtest.RequireCode(t, err, timmy.EINVALID, "invoice amount must be at least 1 sat")
}

func TestCreateInvoiceChecksWhatLndReturned(t *testing.T) {
	b := setup(t)
	other := b.fake.BuyerInvoice(99)
	d, err := lightning.Decode(other)
	require.NoError(t, err)
	b.fake.FailNext(200, `{"r_hash":"`+b64(d.PaymentHash[:])+`","payment_request":"`+other+`","add_index":"1"}`)
	_, err = b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 21})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnd: issued an invoice for 99000 msat when 21 sats were asked")

	// A hold invoice must be locked to the hash of our preimage.
	b.fake.FailNext(200, `{"payment_request":"`+other+`","add_index":"1"}`)
	pre, err := timmy.NewPreimage()
	require.NoError(t, err)
	_, err = b.client.CreateHoldInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 99}, pre)
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.Contains(t, err.Error(), "returned an invoice for hash")
}

func TestLookupInvoice(t *testing.T) {
	b := setup(t)
	paid := b.create(t, 21)
	b.fake.MarkPaid(paid.PaymentHash)
	require.Equal(t, timmy.InvoiceSettled, b.status(t, paid.PaymentHash))

	_, err := b.client.LookupInvoice(b.ctx, timmy.PaymentHash{1})
	lightningtest.RequireCode(t, err, timmy.ENOTFOUND, "lnd: not found: unable to locate invoice")
}

func TestLookupInvoiceExpiry(t *testing.T) {
	b := setup(t)
	open := b.create(t, 21)
	expired := b.create(t, 21)
	b.fake.Expire(expired.PaymentHash)
	hold, _ := b.createHold(t, 21)
	require.NoError(t, b.client.CancelHoldInvoice(b.ctx, hold.PaymentHash))

	// Before expiry: lnd's CANCELED is the service's cancellation.
	require.Equal(t, timmy.InvoiceOpen, b.status(t, open.PaymentHash))
	require.Equal(t, timmy.InvoiceCancelled, b.status(t, expired.PaymentHash))
	require.Equal(t, timmy.InvoiceCancelled, b.status(t, hold.PaymentHash))

	// Past expiry: an unpaid invoice is expired, whether lnd's watcher
	// cancelled it yet or not, once the grace period is over.
	lnd.SetNow(b.client, func() time.Time { return open.ExpiresAt.Add(time.Second) })
	require.Equal(t, timmy.InvoiceOpen, b.status(t, open.PaymentHash))
	require.Equal(t, timmy.InvoiceExpired, b.status(t, expired.PaymentHash))
	lnd.SetNow(b.client, func() time.Time { return open.ExpiresAt.Add(lightning.ExpiryGrace + time.Second) })
	require.Equal(t, timmy.InvoiceExpired, b.status(t, open.PaymentHash))
	require.Equal(t, timmy.InvoiceExpired, b.status(t, hold.PaymentHash))
}

func TestHoldInvoiceSettle(t *testing.T) {
	b := setup(t)
	inv, pre := b.createHold(t, 50)
	require.Equal(t, &pre, inv.Preimage)
	require.Equal(t, timmy.PaymentHash(sha256.Sum256(pre[:])), inv.PaymentHash)
	got, ok := b.fake.Invoice(inv.PaymentHash)
	require.True(t, ok)
	require.True(t, got.Hold)
	require.Equal(t, timmy.InvoiceOpen, b.status(t, inv.PaymentHash))

	// Settling before the buyer paid is refused.
	lightningtest.RequireCode(t, b.client.SettleHoldInvoice(b.ctx, pre), timmy.ECONFLICT, "cannot settle an invoice that has not been paid")

	b.fake.MarkPaid(inv.PaymentHash)
	require.Equal(t, timmy.InvoiceAccepted, b.status(t, inv.PaymentHash))

	require.NoError(t, b.client.SettleHoldInvoice(b.ctx, pre))
	require.Equal(t, timmy.InvoiceSettled, b.status(t, inv.PaymentHash))
	require.Equal(t, lndtest.StateSettled, b.fake.State(inv.PaymentHash))

	// Idempotent: settling again succeeds, cancelling is refused.
	require.NoError(t, b.client.SettleHoldInvoice(b.ctx, pre))
	lightningtest.RequireCode(t, b.client.CancelHoldInvoice(b.ctx, inv.PaymentHash), timmy.ECONFLICT, "cannot cancel a settled invoice")
	require.Equal(t, timmy.InvoiceSettled, b.status(t, inv.PaymentHash))
}

func TestHoldInvoiceCancel(t *testing.T) {
	b := setup(t)
	inv, pre := b.createHold(t, 50)
	b.fake.MarkPaid(inv.PaymentHash)
	require.NoError(t, b.client.CancelHoldInvoice(b.ctx, inv.PaymentHash))
	require.Equal(t, timmy.InvoiceCancelled, b.status(t, inv.PaymentHash))
	got, _ := b.fake.Invoice(inv.PaymentHash)
	require.Equal(t, []string{lndtest.StateCanceled}, got.HTLCStates)

	// Idempotent: cancelling again succeeds, settling is refused. A paid
	// and cancelled invoice stays cancelled after its expiry.
	require.NoError(t, b.client.CancelHoldInvoice(b.ctx, inv.PaymentHash))
	lightningtest.RequireCode(t, b.client.SettleHoldInvoice(b.ctx, pre), timmy.ECONFLICT, "cannot settle a cancelled invoice")
	lnd.SetNow(b.client, func() time.Time { return inv.ExpiresAt.Add(time.Hour) })
	require.Equal(t, timmy.InvoiceCancelled, b.status(t, inv.PaymentHash))

	lightningtest.RequireCode(t, b.client.CancelHoldInvoice(b.ctx, timmy.PaymentHash{9}), timmy.ENOTFOUND, "lnd: not found: unable to locate invoice")
}

func TestHoldInvoiceIdempotentOnLndErrorText(t *testing.T) {
	b := setup(t)
	inv, pre := b.createHold(t, 50)
	// Older lnd versions, and races between replicas, answer with these.
	b.fake.FailNext(500, `{"code":2,"message":"invoice already settled","details":[]}`)
	require.NoError(t, b.client.SettleHoldInvoice(b.ctx, pre))
	b.fake.FailNext(500, `{"code":2,"message":"invoice already canceled","details":[]}`)
	require.NoError(t, b.client.CancelHoldInvoice(b.ctx, inv.PaymentHash))
}

func TestTLSPinning(t *testing.T) {
	b := setup(t)
	other := lndtest.New(t)

	// The other node's certificate does not vouch for this one.
	c := b.newClient(t, lnd.Config{TLSCertPEM: other.CertPEM})
	_, err := c.LookupInvoice(b.ctx, timmy.PaymentHash{})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.Contains(t, timmy.ErrorMessage(err), "not the pinned lnd certificate")

	// Nor do the system roots.
	c, err = lnd.New(lnd.Config{URL: b.fake.URL, Macaroon: b.fake.Macaroon})
	require.NoError(t, err)
	_, err = c.LookupInvoice(b.ctx, timmy.PaymentHash{})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.Contains(t, timmy.ErrorMessage(err), "not the pinned lnd certificate")

	// A name the certificate lacks can be overridden with one it has.
	c = b.newClient(t, lnd.Config{TLSServerName: "localhost"})
	_, err = c.LookupInvoice(b.ctx, timmy.PaymentHash{})
	lightningtest.RequireCode(t, err, timmy.ENOTFOUND, "")
}

func TestMacaroon(t *testing.T) {
	b := setup(t)
	m, err := macaroon.New([]byte("another root key"), []byte("0"), "lnd", macaroon.LatestVersion)
	require.NoError(t, err)
	wrong, err := m.MarshalBinary()
	require.NoError(t, err)

	c := b.newClient(t, lnd.Config{Macaroon: wrong})
	_, err = c.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 1})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnd: macaroon rejected: verification failed: signature mismatch after caveat verification")

	_, err = lnd.New(lnd.Config{URL: b.fake.URL, Macaroon: []byte("not a macaroon")})
	require.ErrorContains(t, err, "lnd: the macaroon does not parse")
	_, err = lnd.New(lnd.Config{URL: "http://127.0.0.1:8080", Macaroon: b.fake.Macaroon})
	require.ErrorContains(t, err, "must be https://host:port")
	_, err = lnd.New(lnd.Config{URL: b.fake.URL, Macaroon: b.fake.Macaroon, TLSCertPEM: []byte("junk")})
	require.ErrorContains(t, err, "holds no PEM certificate")
}

func TestErrorShapes(t *testing.T) {
	b := setup(t)
	cases := []struct {
		status int
		body   string
		code   string
		want   string
	}{
		{500, `{"code":2,"message":"wallet locked, unlock it to enable full RPC access","details":[]}`, timmy.EUNAVAILABLE,
			"lnd: not ready: wallet locked, unlock it to enable full RPC access"},
		{503, `{"code":14,"message":"connection error","details":[]}`, timmy.EUNAVAILABLE, "lnd: not ready: connection error"},
		{500, `{"code":2,"message":"memo too large","details":[]}`, timmy.EUNAVAILABLE, "lnd: memo too large (HTTP 500, gRPC code 2)"},
		{400, `{"code":3,"message":"proto: unknown field \"x\"","details":[]}`, timmy.EUNAVAILABLE, `lnd: proto: unknown field "x" (HTTP 400, gRPC code 3)`},
		{500, `{"error":"old gateway","code":2,"message":"old gateway"}`, timmy.EUNAVAILABLE, "lnd: old gateway (HTTP 500, gRPC code 2)"},
		{502, `<html><body>Bad Gateway</body></html>`, timmy.EUNAVAILABLE, "lnd: <html><body>Bad Gateway</body></html> (HTTP 502, gRPC code 0)"},
		{404, `404 page not found`, timmy.ENOTFOUND, "lnd: HTTP 404 (is LND_REST_URL lnd's REST port?): 404 page not found"},
	}
	for _, c := range cases {
		b.fake.FailNext(c.status, c.body)
		_, err := b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 1})
		lightningtest.RequireCode(t, err, c.code, c.want)
		require.Contains(t, err.Error(), "lnd add invoice: ")
	}
}

func TestNotifyInvoicesResumesFromSettleIndex(t *testing.T) {
	b := setup(t)
	one, two, three := b.create(t, 1), b.create(t, 2), b.create(t, 3)
	b.fake.MarkPaid(one.PaymentHash) // settle index 1, before any cursor

	n := b.notify(t, b.client)
	require.Eventually(t, func() bool { return b.fake.Subscribers() == 1 }, 5*time.Second, 10*time.Millisecond)
	n.none(t) // nothing saved yet: no backlog

	b.fake.MarkPaid(two.PaymentHash) // settle index 2
	require.Equal(t, two.PaymentHash, n.next(t))
	require.Eventually(t, func() bool {
		v, _ := b.cursors.LoadCursor(b.ctx, lnd.SettleIndexCursor)
		return v == 2
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, n.stop(t))

	// Paid while Timmy was down.
	b.fake.MarkPaid(three.PaymentHash) // settle index 3

	// A new process with the same cursor store replays only what it missed.
	n = b.notify(t, b.newClient(t, lnd.Config{}))
	require.Equal(t, three.PaymentHash, n.next(t))
	n.none(t)
	v, err := b.cursors.LoadCursor(b.ctx, lnd.SettleIndexCursor)
	require.NoError(t, err)
	require.Equal(t, uint64(3), v)
	require.NoError(t, n.stop(t))
}

func TestNotifyInvoicesWaitsForFirstMessage(t *testing.T) {
	b := setup(t)
	// lnd sends a stream's headers only with its first message, so a quiet
	// subscription must outlive the request timeout.
	c := b.newClient(t, lnd.Config{Timeout: 100 * time.Millisecond})
	n := b.notify(t, c)
	require.Eventually(t, func() bool { return b.fake.Subscribers() == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	inv := b.create(t, 5)
	b.fake.MarkPaid(inv.PaymentHash)
	require.Equal(t, inv.PaymentHash, n.next(t))
}

func TestNotifyInvoicesHoldAccepted(t *testing.T) {
	b := setup(t)
	before, pre := b.createHold(t, 40)
	n := b.notify(t, b.client)
	require.Eventually(t, func() bool { return b.fake.SingleSubscribers(before.PaymentHash) == 1 }, 5*time.Second, 10*time.Millisecond)

	// SubscribeInvoices never reports ACCEPTED; the single subscription does.
	b.fake.MarkPaid(before.PaymentHash)
	require.Equal(t, before.PaymentHash, n.next(t))
	require.Equal(t, timmy.InvoiceAccepted, b.status(t, before.PaymentHash))

	// A hold invoice created while listening is watched too.
	after, _ := b.createHold(t, 41)
	require.Eventually(t, func() bool { return b.fake.SingleSubscribers(after.PaymentHash) == 1 }, 5*time.Second, 10*time.Millisecond)
	b.fake.MarkPaid(after.PaymentHash)
	require.Equal(t, after.PaymentHash, n.next(t))
	require.NoError(t, b.client.CancelHoldInvoice(b.ctx, after.PaymentHash))
	require.Equal(t, after.PaymentHash, n.next(t))

	// Settling is reported, and a final invoice is no longer watched.
	require.NoError(t, b.client.SettleHoldInvoice(b.ctx, pre))
	require.Equal(t, before.PaymentHash, n.next(t))
	require.Eventually(t, func() bool {
		return b.fake.SingleSubscribers(before.PaymentHash) == 0 && b.fake.SingleSubscribers(after.PaymentHash) == 0
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, n.stop(t))
}

func TestNotifyInvoicesReportsDrop(t *testing.T) {
	b := setup(t)
	n := b.notify(t, b.client)
	require.Eventually(t, func() bool { return b.fake.Subscribers() == 1 }, 5*time.Second, 10*time.Millisecond)
	b.fake.CloseStreams()
	select {
	case err := <-n.done:
		lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnd: GET /v1/invoices/subscribe: stream ended by server")
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyInvoices did not return after the stream dropped")
	}
}

func TestPayInvoice(t *testing.T) {
	b := setup(t, lndtest.WithFeeSats(3))
	pr := b.fake.BuyerInvoice(4000)
	d, err := lightning.Decode(pr)
	require.NoError(t, err)

	p, err := b.client.PayInvoice(b.ctx, pr, 4000)
	require.NoError(t, err)
	require.Equal(t, timmy.Payment{Hash: d.PaymentHash, State: timmy.PaymentSucceeded, FeeSats: 3}, p)

	payments := b.fake.Payments()
	require.Len(t, payments, 1)
	require.Equal(t, timmy.Sats(4000), payments[0].AmountSats)
	require.Equal(t, timmy.Sats(20), payments[0].FeeLimitSats, "0.5% of 4000 is above the 10 sat floor")
	require.Equal(t, int64(60), payments[0].TimeoutSeconds)

	got, err := b.client.LookupPayment(b.ctx, d.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, p, got)

	// Paying again reports the first payment and pays nothing.
	p, err = b.client.PayInvoice(b.ctx, pr, 4000)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentSucceeded, p.State)
	require.Equal(t, 1, b.fake.Payments()[0].Attempts)
}

func TestPayInvoiceRejectsBadInvoicesBeforePaying(t *testing.T) {
	b := setup(t)
	cases := append(lightningtest.UnpayableInvoices(b.fake.BuyerInvoiceWith),
		// Decodes fine, but lnd refuses it: another network.
		lightningtest.Unpayable{
			Name:           "mainnet",
			PaymentRequest: b.fake.BuyerInvoiceWith(lndtest.InvoiceOptions{AmountMsat: 42_000, Expiry: time.Hour, Network: "mainnet"}),
			Owed:           42,
			Message:        "the invoice is for a different network than this service's node",
		})
	for _, c := range cases {
		_, err := b.client.PayInvoice(b.ctx, c.PaymentRequest, c.Owed)
		lightningtest.RequireCode(t, err, timmy.EINVALID, c.Message)
		require.Empty(t, b.fake.Payments(), c.Name)
	}
}

func TestPayInvoiceFailed(t *testing.T) {
	b := setup(t, lndtest.WithPayMode(lndtest.PayFail))
	pr := b.fake.BuyerInvoice(10)
	p, err := b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentFailed, p.State)
	require.Equal(t, "no route", p.FailureReason)

	got, err := b.client.LookupPayment(b.ctx, p.Hash)
	require.NoError(t, err)
	require.Equal(t, p, got)

	// lnd lets a failed payment be tried again.
	b.fake.SetPayMode(lndtest.PaySucceed)
	p, err = b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentSucceeded, p.State)
	require.Equal(t, 2, b.fake.Payments()[0].Attempts)
}

func TestPayInvoicePending(t *testing.T) {
	b := setup(t, lndtest.WithPayMode(lndtest.PayPending))

	// Still in flight after PayWait: pending, and paying again does not
	// start a second payment.
	pr := b.fake.BuyerInvoice(10)
	p, err := b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentPending, p.State)
	p, err = b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentPending, p.State)
	require.Equal(t, 1, b.fake.Payments()[0].Attempts)

	b.fake.ResolvePayment(p.Hash, true)
	got, err := b.client.LookupPayment(b.ctx, p.Hash)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentSucceeded, got.State)

	// Resolved while PayInvoice waits: final.
	c := b.newClient(t, lnd.Config{PayWait: 5 * time.Second})
	pr = b.fake.BuyerInvoice(11)
	d, err := lightning.Decode(pr)
	require.NoError(t, err)
	go func() {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if len(b.fake.Payments()) == 2 {
				b.fake.ResolvePayment(d.PaymentHash, false)
				return
			}
		}
	}()
	p, err = c.PayInvoice(b.ctx, pr, 11)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentFailed, p.State)
}

func TestLookupPaymentNotFound(t *testing.T) {
	b := setup(t)
	_, err := b.client.LookupPayment(b.ctx, timmy.PaymentHash{3})
	lightningtest.RequireCode(t, err, timmy.ENOTFOUND, "lnd: not found: payment isn't initiated")
}

func TestConfigFromEnv(t *testing.T) {
	b := setup(t)
	e := env.FromMap(b.fake.Env())
	cfg, err := lnd.ConfigFromEnv(e)
	require.NoError(t, err)
	require.NoError(t, e.Err())
	require.Equal(t, b.fake.Macaroon, cfg.Macaroon)
	require.Equal(t, b.fake.CertPEM, cfg.TLSCertPEM)
	require.Equal(t, lightning.DefaultTimeout, cfg.Timeout)
	require.Equal(t, lnd.DefaultFeeLimitSats, cfg.FeeLimitSats)
	c, err := lnd.New(cfg)
	require.NoError(t, err)
	_, err = c.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 3})
	require.NoError(t, err)

	// The hex form, directly, from a _FILE, or in the path's file.
	hexFile := filepath.Join(t.TempDir(), "mac.hex")
	require.NoError(t, os.WriteFile(hexFile, []byte(b.fake.MacaroonHex+"\n"), 0o600))
	for _, m := range []map[string]string{
		{"LND_MACAROON_HEX": b.fake.MacaroonHex},
		{"LND_MACAROON_HEX_FILE": hexFile},
		{"LND_MACAROON_PATH": hexFile},
	} {
		cfg, err := lnd.ConfigFromEnv(env.FromMap(m))
		require.NoError(t, err)
		require.Equal(t, b.fake.Macaroon, cfg.Macaroon)
	}

	_, err = lnd.ConfigFromEnv(env.FromMap(map[string]string{"LND_MACAROON_HEX": "zz"}))
	require.ErrorContains(t, err, "LND_MACAROON_HEX is not hex")
	_, err = lnd.ConfigFromEnv(env.FromMap(map[string]string{"LND_MACAROON_HEX": "00", "LND_MACAROON_PATH": hexFile}))
	require.EqualError(t, err, "set only one of LND_MACAROON_PATH and LND_MACAROON_HEX")
	_, err = lnd.ConfigFromEnv(env.FromMap(map[string]string{"LND_TLS_CERT_PATH": filepath.Join(t.TempDir(), "missing")}))
	require.ErrorContains(t, err, "LND_TLS_CERT_PATH")

	e = env.FromMap(map[string]string{"LND_PAY_FEE_LIMIT_SATS": "lots", "LND_INVOICE_PRIVATE": "true"})
	cfg, err = lnd.ConfigFromEnv(e)
	require.NoError(t, err)
	require.True(t, cfg.Private)
	require.ErrorContains(t, e.Err(), "LND_PAY_FEE_LIMIT_SATS")
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestNotifyInvoicesDropsHoldInvoiceLndForgot(t *testing.T) {
	b := setup(t)
	c := b.newClient(t, lnd.Config{Timeout: 200 * time.Millisecond})
	kept, _ := b.createHoldWith(t, c, 30)
	forgotten, _ := b.createHoldWith(t, c, 31)
	b.fake.Delete(forgotten.PaymentHash)

	// lnd waits silently on an unknown hash. After the first-message
	// timeout the client asks, learns the invoice is gone, and stops
	// watching it without failing the whole subscription.
	n := b.notify(t, c)
	require.Eventually(t, func() bool {
		return b.fake.Subscribers() == 1 && b.fake.SingleSubscribers(kept.PaymentHash) == 1
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(600 * time.Millisecond)
	select {
	case err := <-n.done:
		t.Fatalf("NotifyInvoices ended: %v", err)
	default:
	}
	require.Zero(t, b.fake.SingleSubscribers(forgotten.PaymentHash))

	b.fake.MarkPaid(kept.PaymentHash)
	require.Equal(t, kept.PaymentHash, n.next(t))
}

func (b *bundle) createHoldWith(t *testing.T, c *lnd.Client, sats timmy.Sats) (timmy.NewInvoice, timmy.Preimage) {
	t.Helper()
	pre := mustPreimage(t)
	inv, err := c.CreateHoldInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: sats, Memo: "work fee", Expiry: 10 * time.Minute}, pre)
	require.NoError(t, err)
	return inv, pre
}

func mustPreimage(t *testing.T) timmy.Preimage {
	t.Helper()
	pre, err := timmy.NewPreimage()
	require.NoError(t, err)
	return pre
}
