package lnbits_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/lightning"
	"github.com/timmyhq/timmy/lightning/lightningtest"
	"github.com/timmyhq/timmy/lightning/lnbits"
	"github.com/timmyhq/timmy/lightning/lnbits/lnbitstest"
)

type bundle struct {
	ctx    context.Context
	fake   *lnbitstest.Fake
	client *lnbits.Client
}

func setup(t *testing.T, opts ...lnbitstest.Option) *bundle {
	t.Helper()
	t.Parallel()
	fake := lnbitstest.New(t, opts...)
	client, err := lnbits.New(lnbits.Config{
		URL:        fake.URL,
		InvoiceKey: fake.InvoiceKey,
		AdminKey:   fake.AdminKey,
		Timeout:    5 * time.Second,
		PayWait:    300 * time.Millisecond,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &bundle{ctx: ctx, fake: fake, client: client}
}

func (b *bundle) create(t *testing.T, sats timmy.Sats) timmy.NewInvoice {
	t.Helper()
	inv, err := b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: sats, Memo: "eval fee", Expiry: 10 * time.Minute})
	require.NoError(t, err)
	return inv
}

func TestCreateInvoice(t *testing.T) {
	b := setup(t)
	before := time.Now()
	inv := b.create(t, 21)

	require.Equal(t, timmy.Sats(21), inv.AmountSats)
	require.Nil(t, inv.Preimage)
	d, err := lightning.Decode(inv.PaymentRequest)
	require.NoError(t, err)
	require.Equal(t, inv.PaymentHash, d.PaymentHash)
	require.Equal(t, "regtest", d.Network)
	require.WithinDuration(t, before.Add(10*time.Minute), inv.ExpiresAt, 2*time.Second)

	got, ok := b.fake.Invoice(inv.PaymentHash)
	require.True(t, ok)
	require.Equal(t, "eval fee", got.Memo)
	require.Equal(t, timmy.Sats(21), got.AmountSats)
}

func TestCreateInvoiceLegacyResponse(t *testing.T) {
	b := setup(t, lnbitstest.WithLegacyResponses())
	inv := b.create(t, 7)
	_, ok := b.fake.Invoice(inv.PaymentHash)
	require.True(t, ok)
	require.True(t, strings.HasPrefix(inv.PaymentRequest, "lnbcrt70n1"))
}

func TestCreateInvoiceChecksWhatLNbitsReturned(t *testing.T) {
	b := setup(t)
	other := b.fake.BuyerInvoice(99)
	d, err := lightning.Decode(other)
	require.NoError(t, err)

	b.fake.FailNext(201, `{"payment_hash":"`+d.PaymentHash.String()+`","bolt11":"`+other+`"}`)
	_, err = b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 21, Memo: "x"})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: issued an invoice for 99000 msat when 21 sats were asked")

	b.fake.FailNext(201, `{"payment_hash":"`+strings.Repeat("ab", 32)+`","bolt11":"`+other+`"}`)
	_, err = b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 99, Memo: "x"})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.Contains(t, err.Error(), "returned payment hash")

	b.fake.FailNext(201, `{"payment_hash":"`+d.PaymentHash.String()+`","bolt11":"lnbcrt1garbage"}`)
	_, err = b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 99, Memo: "x"})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: returned an invoice that does not decode")

	_, err = b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 0})
	lightningtest.RequireCode(t, err, timmy.EINVALID, "invoice amount must be at least 1 sat")
}

func TestLookupInvoice(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "v1"
		var opts []lnbitstest.Option
		if legacy {
			name = "legacy"
			opts = append(opts, lnbitstest.WithLegacyResponses())
		}
		t.Run(name, func(t *testing.T) {
			b := setup(t, opts...)
			paid := b.create(t, 21)
			unpaid := b.create(t, 21)

			st, err := b.client.LookupInvoice(b.ctx, paid.PaymentHash)
			require.NoError(t, err)
			require.Equal(t, timmy.InvoiceOpen, st)

			b.fake.MarkPaid(paid.PaymentHash)
			st, err = b.client.LookupInvoice(b.ctx, paid.PaymentHash)
			require.NoError(t, err)
			require.Equal(t, timmy.InvoiceSettled, st)

			// Past its expiry and the grace period, an unpaid invoice is
			// expired even before LNbits says so; a paid one stays settled.
			lnbits.SetNow(b.client, func() time.Time { return unpaid.ExpiresAt.Add(lightning.ExpiryGrace + time.Second) })
			st, err = b.client.LookupInvoice(b.ctx, unpaid.PaymentHash)
			require.NoError(t, err)
			require.Equal(t, timmy.InvoiceExpired, st)
			st, err = b.client.LookupInvoice(b.ctx, paid.PaymentHash)
			require.NoError(t, err)
			require.Equal(t, timmy.InvoiceSettled, st)

			// Within the grace period it is still open.
			lnbits.SetNow(b.client, func() time.Time { return unpaid.ExpiresAt.Add(time.Second) })
			st, err = b.client.LookupInvoice(b.ctx, unpaid.PaymentHash)
			require.NoError(t, err)
			require.Equal(t, timmy.InvoiceOpen, st)
		})
	}
}

func TestLookupInvoiceFailedMeansExpired(t *testing.T) {
	b := setup(t)
	inv := b.create(t, 21)
	b.fake.Expire(inv.PaymentHash)
	st, err := b.client.LookupInvoice(b.ctx, inv.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, timmy.InvoiceExpired, st)
}

func TestLookupInvoiceNotFound(t *testing.T) {
	b := setup(t)
	_, err := b.client.LookupInvoice(b.ctx, timmy.PaymentHash{1})
	lightningtest.RequireCode(t, err, timmy.ENOTFOUND, "lnbits: not found (404): Payment does not exist.")
}

func TestPayInvoice(t *testing.T) {
	b := setup(t, lnbitstest.WithFeeSats(2))
	pr := b.fake.BuyerInvoice(42)
	d, err := lightning.Decode(pr)
	require.NoError(t, err)

	p, err := b.client.PayInvoice(b.ctx, pr, 42)
	require.NoError(t, err)
	require.Equal(t, timmy.Payment{Hash: d.PaymentHash, State: timmy.PaymentSucceeded, FeeSats: 2}, p)

	got, err := b.client.LookupPayment(b.ctx, d.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, p, got)

	payments := b.fake.Payments()
	require.Len(t, payments, 1)
	require.Equal(t, timmy.Sats(42), payments[0].AmountSats)
	require.Equal(t, "success", payments[0].Status)
}

func TestPayInvoiceRejectsBadInvoicesBeforePaying(t *testing.T) {
	b := setup(t)
	for _, c := range lightningtest.UnpayableInvoices(b.fake.BuyerInvoiceWith) {
		_, err := b.client.PayInvoice(b.ctx, c.PaymentRequest, c.Owed)
		lightningtest.RequireCode(t, err, timmy.EINVALID, c.Message)
		require.Empty(t, b.fake.Payments(), c.Name)
	}
}

func TestPayInvoiceWithoutAdminKey(t *testing.T) {
	b := setup(t)
	client, err := lnbits.New(lnbits.Config{URL: b.fake.URL, InvoiceKey: b.fake.InvoiceKey})
	require.NoError(t, err)
	_, err = client.PayInvoice(b.ctx, b.fake.BuyerInvoice(5), 5)
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: paying refunds needs the wallet's admin key (LNBITS_ADMIN_KEY)")
	require.Empty(t, b.fake.Payments())

	// An invoice key given as the admin key is refused by LNbits.
	client, err = lnbits.New(lnbits.Config{URL: b.fake.URL, InvoiceKey: b.fake.InvoiceKey, AdminKey: b.fake.InvoiceKey})
	require.NoError(t, err)
	_, err = client.PayInvoice(b.ctx, b.fake.BuyerInvoice(5), 5)
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: invalid API key (403): Invoice (or Admin) key required.")
	require.Empty(t, b.fake.Payments())
}

func TestPayInvoiceTwicePaysOnce(t *testing.T) {
	b := setup(t)
	pr := b.fake.BuyerInvoice(10)
	var wg sync.WaitGroup
	results := make([]timmy.Payment, 20)
	errs := make([]error, 20)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = b.client.PayInvoice(b.ctx, pr, 10) })
	}
	wg.Wait()
	for i := range results {
		require.NoError(t, errs[i])
		require.Equal(t, timmy.PaymentSucceeded, results[i].State, "attempt %d", i)
	}
	require.Len(t, b.fake.Payments(), 1)
}

func TestPayInvoiceFailed(t *testing.T) {
	b := setup(t, lnbitstest.WithPayMode(lnbitstest.PayFail))
	pr := b.fake.BuyerInvoice(10)
	p, err := b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentFailed, p.State)
	require.Equal(t, "Payment failed: no route found", p.FailureReason)

	got, err := b.client.LookupPayment(b.ctx, p.Hash)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentFailed, got.State)

	// A failed payment may be tried again.
	b.fake.SetPayMode(lnbitstest.PaySucceed)
	p, err = b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentSucceeded, p.State)
}

func TestPayInvoicePending(t *testing.T) {
	b := setup(t, lnbitstest.WithPayMode(lnbitstest.PayPending))

	// Still pending after PayWait: returned as pending.
	pr := b.fake.BuyerInvoice(10)
	p, err := b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentPending, p.State)
	b.fake.ResolvePayment(p.Hash, false)
	got, err := b.client.LookupPayment(b.ctx, p.Hash)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentFailed, got.State)

	// Resolved within PayWait: returned final.
	pr = b.fake.BuyerInvoice(11)
	d, err := lightning.Decode(pr)
	require.NoError(t, err)
	go func() {
		// Resolve as soon as the payment is in flight, within PayWait.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if len(b.fake.Payments()) == 2 {
				b.fake.ResolvePayment(d.PaymentHash, true)
				return
			}
		}
	}()
	p, err = b.client.PayInvoice(b.ctx, pr, 11)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentSucceeded, p.State)
}

func TestPayInvoiceLegacyResponse(t *testing.T) {
	b := setup(t, lnbitstest.WithLegacyResponses())
	p, err := b.client.PayInvoice(b.ctx, b.fake.BuyerInvoice(10), 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentSucceeded, p.State)
}

func TestPayInvoiceUnknownOutcome(t *testing.T) {
	b := setup(t)
	pr := b.fake.BuyerInvoice(10)

	// A 520 without a verdict, then a lookup that fails too: maybe in flight.
	b.fake.FailNext(520, `{"detail":"Unexpected backend error.","status":"pending"}`)
	b.fake.FailNext(500, `{"detail":"database is locked"}`)
	p, err := b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentPending, p.State)

	// A 520 without a verdict, and LNbits never recorded the payment: failed.
	b.fake.FailNext(520, `{"detail":"Unexpected backend error.","status":"pending"}`)
	p, err = b.client.PayInvoice(b.ctx, pr, 10)
	require.NoError(t, err)
	require.Equal(t, timmy.PaymentFailed, p.State)
	require.Equal(t, "Unexpected backend error.", p.FailureReason)

	// A server error: the outcome is unknown, so it is an error.
	b.fake.FailNext(502, `<html><body>Bad Gateway</body></html>`)
	_, err = b.client.PayInvoice(b.ctx, pr, 10)
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: HTTP 502: <html><body>Bad Gateway</body></html>")
	require.Empty(t, b.fake.Payments())
}

func TestLookupPaymentNotFound(t *testing.T) {
	b := setup(t)
	_, err := b.client.LookupPayment(b.ctx, timmy.PaymentHash{2})
	lightningtest.RequireCode(t, err, timmy.ENOTFOUND, "")
}

func TestErrorShapes(t *testing.T) {
	b := setup(t)
	cases := []struct {
		status int
		body   string
		code   string
		want   string
	}{
		{400, `{"detail":[{"loc":["body","amount"],"msg":"field required","type":"value_error.missing"}]}`,
			timmy.EUNAVAILABLE, "lnbits: amount: field required"},
		{422, `{"detail":[{"loc":["body","amount"],"msg":"field required","type":"value_error.missing"},{"loc":["body","extra","x"],"msg":"not a dict","type":"type_error"}]}`,
			timmy.EUNAVAILABLE, "lnbits: amount: field required; extra.x: not a dict"},
		{400, `{"detail":"'description_hash' must be a valid hex string"}`,
			timmy.EUNAVAILABLE, "lnbits: 'description_hash' must be a valid hex string"},
		{401, `{"detail":"Invalid key or wallet."}`, timmy.EUNAVAILABLE, "lnbits: invalid API key (401): Invalid key or wallet."},
		{403, `{"detail":"Invoice (or Admin) key required."}`, timmy.EUNAVAILABLE, "lnbits: invalid API key (403): Invoice (or Admin) key required."},
		{520, `{"detail":"Could not connect to backend.","status":"pending"}`, timmy.EUNAVAILABLE, "lnbits: funding source error (520): Could not connect to backend."},
		{500, `{"message":"old style"}`, timmy.EUNAVAILABLE, "lnbits: HTTP 500: old style"},
		{404, `{"detail":"Not Found"}`, timmy.ENOTFOUND, "lnbits: not found (404): Not Found"},
	}
	for _, c := range cases {
		b.fake.FailNext(c.status, c.body)
		_, err := b.client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 1, Memo: "x"})
		lightningtest.RequireCode(t, err, c.code, c.want)
		require.Contains(t, err.Error(), "lnbits create invoice: ")
	}

	// A real wrong key, not an injected response.
	client, err := lnbits.New(lnbits.Config{URL: b.fake.URL, InvoiceKey: "wrong"})
	require.NoError(t, err)
	_, err = client.CreateInvoice(b.ctx, timmy.InvoiceRequest{AmountSats: 1})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: invalid API key (401): Invalid key or wallet.")
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	client, err := lnbits.New(lnbits.Config{URL: srv.URL, InvoiceKey: "k", Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	_, err = client.LookupInvoice(context.Background(), timmy.PaymentHash{})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestNotifyInvoices(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	hints := make(chan timmy.PaymentHash, 10)
	done := make(chan error, 1)
	go func() { done <- b.client.NotifyInvoices(ctx, func(h timmy.PaymentHash) { hints <- h }) }()
	require.Eventually(t, func() bool { return b.fake.WebsocketCount() == 1 }, 5*time.Second, 10*time.Millisecond)

	inv := b.create(t, 21)
	b.fake.MarkPaid(inv.PaymentHash)
	select {
	case h := <-hints:
		require.Equal(t, inv.PaymentHash, h)
	case <-time.After(5 * time.Second):
		t.Fatal("no hint for the paid invoice")
	}
	st, err := b.client.LookupInvoice(b.ctx, inv.PaymentHash)
	require.NoError(t, err)
	require.Equal(t, timmy.InvoiceSettled, st)

	// Ending the context ends the listener without an error.
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyInvoices did not return after cancel")
	}
}

func TestNotifyInvoicesReportsDrop(t *testing.T) {
	b := setup(t)
	done := make(chan error, 1)
	go func() { done <- b.client.NotifyInvoices(b.ctx, func(timmy.PaymentHash) {}) }()
	require.Eventually(t, func() bool { return b.fake.WebsocketCount() == 1 }, 5*time.Second, 10*time.Millisecond)
	b.fake.CloseWebsockets()
	select {
	case err := <-done:
		lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "lnbits: payment websocket closed by server (1001 server restarting)")
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyInvoices did not return after the socket dropped")
	}
}

func TestNotifyInvoicesDialErrorHidesKey(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	client, err := lnbits.New(lnbits.Config{URL: srv.URL, InvoiceKey: "secretinvoicekey", Timeout: time.Second})
	require.NoError(t, err)
	err = client.NotifyInvoices(context.Background(), func(timmy.PaymentHash) {})
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.NotContains(t, err.Error(), "secretinvoicekey")
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := lnbits.New(lnbits.Config{InvoiceKey: "k"})
	require.EqualError(t, err, "lnbits: URL is required (LNBITS_URL)")
	_, err = lnbits.New(lnbits.Config{URL: "lnbits.local", InvoiceKey: "k"})
	require.ErrorContains(t, err, "must be an http(s) URL")
	_, err = lnbits.New(lnbits.Config{URL: "http://lnbits.local"})
	require.EqualError(t, err, "lnbits: the wallet's invoice key is required (LNBITS_API_KEY)")
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	adminFile := filepath.Join(dir, "admin")
	require.NoError(t, os.WriteFile(adminFile, []byte("adminkey\n"), 0o600))

	e := env.FromMap(map[string]string{
		"LNBITS_URL":            "https://lnbits.example.com",
		"LNBITS_API_KEY":        "invoicekey",
		"LNBITS_ADMIN_KEY_FILE": adminFile,
		"LNBITS_TIMEOUT":        "3s",
	})
	cfg := lnbits.ConfigFromEnv(e)
	require.NoError(t, e.Err())
	require.Equal(t, lnbits.Config{
		URL:        "https://lnbits.example.com",
		InvoiceKey: "invoicekey",
		AdminKey:   "adminkey",
		Timeout:    3 * time.Second,
		PayTimeout: lightning.DefaultPayTimeout,
	}, cfg)

	e = env.FromMap(map[string]string{"LNBITS_PAY_TIMEOUT": "soon"})
	_ = lnbits.ConfigFromEnv(e)
	require.ErrorContains(t, e.Err(), "LNBITS_PAY_TIMEOUT")
}

func TestNotifyInvoicesIgnoresNoiseAndNoticesSilence(t *testing.T) {
	t.Parallel()
	var hash timmy.PaymentHash
	hash[0] = 7
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		for _, msg := range []string{
			"not json",
			`{"pending": false, "status": "success"}`,
			`{"wallet_balance": 5, "payment": {"payment_hash": "nothex"}}`,
			`{"wallet_balance": 5, "payment": {"payment_hash": "` + hash.String() + `", "amount": 1000}}`,
		} {
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				return
			}
		}
		// Then go quiet without reading, so pings go unanswered.
		<-ctx.Done()
	}))
	t.Cleanup(srv.Close)

	client, err := lnbits.New(lnbits.Config{URL: srv.URL, InvoiceKey: "inkey", Timeout: time.Second})
	require.NoError(t, err)
	lnbits.SetPing(client, 100*time.Millisecond, 200*time.Millisecond)
	var hints []timmy.PaymentHash
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = client.NotifyInvoices(ctx, func(h timmy.PaymentHash) { hints = append(hints, h) })
	lightningtest.RequireCode(t, err, timmy.EUNAVAILABLE, "")
	require.Contains(t, err.Error(), "no answer to ping")
	require.Equal(t, []timmy.PaymentHash{hash}, hints)
	require.Equal(t, "/api/v1/ws/inkey", gotPath)
}
