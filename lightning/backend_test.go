package lightning_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"
	"github.com/stretchr/testify/require"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

func TestSignInvoice(t *testing.T) {
	t.Parallel()
	key, err := btcec.NewPrivateKey()
	require.NoError(t, err)
	created := time.Unix(1_800_000_000, 0)
	hash := timmy.PaymentHash{1, 2, 3}
	addr := [32]byte{9}
	pr, err := lightning.SignInvoice(key, lightning.Invoice{
		Chain: &chaincfg.RegressionNetParams, PaymentHash: hash, PaymentAddr: addr,
		AmountMsat: 21_000, CreatedAt: created, Expiry: 10 * time.Minute, Memo: "eval fee", CLTVExpiry: 80,
	})
	require.NoError(t, err)

	inv, err := zpay32.Decode(pr, &chaincfg.RegressionNetParams)
	require.NoError(t, err)
	require.True(t, inv.Destination.IsEqual(key.PubKey()), "signed by the node key")
	require.Equal(t, [32]byte(hash), *inv.PaymentHash)
	require.Equal(t, addr, inv.PaymentAddr.UnwrapOr([32]byte{}))
	require.Equal(t, uint64(80), inv.MinFinalCLTVExpiry())
	d, err := lightning.Decode(pr)
	require.NoError(t, err)
	require.Equal(t, timmy.Sats(21), d.AmountSats)
	require.Equal(t, "eval fee", d.Description)
	require.True(t, created.Add(10*time.Minute).Equal(d.ExpiresAt))

	// Optional fields left zero are left out: no amount, BOLT11's defaults.
	pr, err = lightning.SignInvoice(key, lightning.Invoice{Chain: &chaincfg.MainNetParams, PaymentHash: hash, CreatedAt: created})
	require.NoError(t, err)
	inv, err = zpay32.Decode(pr, &chaincfg.MainNetParams)
	require.NoError(t, err)
	require.Nil(t, inv.MilliSat)
	require.Equal(t, time.Hour, inv.Expiry())
	require.Equal(t, uint64(zpay32.DefaultAssumedFinalCLTVDelta), inv.MinFinalCLTVExpiry())
	require.True(t, inv.PaymentAddr.IsNone())

	_, err = lightning.SignInvoice(nil, lightning.Invoice{Chain: &chaincfg.RegressionNetParams})
	require.EqualError(t, err, "sign invoice: no node key")
	_, err = lightning.SignInvoice(key, lightning.Invoice{})
	require.EqualError(t, err, "sign invoice: no chain")
}

func TestCheckIssued(t *testing.T) {
	f := setup(t)
	pr, hash := f.encode(invoiceOpts{msat: 21_000, expiry: 10 * time.Minute})
	inv, err := lightning.CheckIssued("lnd", pr, 21)
	require.NoError(t, err)
	require.Equal(t, timmy.NewInvoice{PaymentRequest: pr, PaymentHash: hash, AmountSats: 21, ExpiresAt: f.now.Add(10 * time.Minute)}, inv)

	_, err = lightning.CheckIssued("lnd", pr, 20)
	require.Equal(t, timmy.EUNAVAILABLE, timmy.ErrorCode(err))
	require.Equal(t, "lnd: issued an invoice for 21000 msat when 20 sats were asked", timmy.ErrorMessage(err))

	// A node's garbage is its fault, not the buyer's: EUNAVAILABLE, not
	// the decoder's EINVALID.
	_, err = lightning.CheckIssued("lnbits", "lnbcrt1garbage", 21)
	require.Equal(t, timmy.EUNAVAILABLE, timmy.ErrorCode(err))
	require.Equal(t, "lnbits: returned an invoice that does not decode", timmy.ErrorMessage(err))
	require.Contains(t, err.Error(), "not a valid BOLT11 invoice")
}

func TestBackendDefaults(t *testing.T) {
	t.Parallel()
	var timeout, payTimeout time.Duration
	payWait := -time.Second
	lightning.SetDefaultDurations(&timeout, &payTimeout, &payWait)
	require.Equal(t, []time.Duration{lightning.DefaultTimeout, lightning.DefaultPayTimeout, lightning.DefaultPayWait},
		[]time.Duration{timeout, payTimeout, payWait})
	timeout, payTimeout, payWait = time.Second, 2*time.Second, 3*time.Second
	lightning.SetDefaultDurations(&timeout, &payTimeout, &payWait)
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, []time.Duration{timeout, payTimeout, payWait})

	exp := time.Unix(1_800_000_000, 0)
	require.False(t, lightning.Lapsed(exp, exp.Add(lightning.ExpiryGrace)))
	require.True(t, lightning.Lapsed(exp, exp.Add(lightning.ExpiryGrace+time.Nanosecond)))

	require.Equal(t, int64(600), lightning.ExpirySeconds(10*time.Minute))
	require.Equal(t, int64(2), lightning.ExpirySeconds(1500*time.Millisecond), "rounded up, never sooner")
	require.Equal(t, int64(0), lightning.ExpirySeconds(0))

	require.NoError(t, lightning.CheckInvoiceRequest(timmy.InvoiceRequest{AmountSats: 1}))
	err := lightning.CheckInvoiceRequest(timmy.InvoiceRequest{AmountSats: 0})
	require.Equal(t, timmy.EINVALID, timmy.ErrorCode(err))
	require.Equal(t, "invoice amount must be at least 1 sat", timmy.ErrorMessage(err))
}

func TestNewJSONRequest(t *testing.T) {
	t.Parallel()
	req, err := lightning.NewJSONRequest(context.Background(), http.MethodPost, "https://node.example/v1/invoices", map[string]any{"memo": "x"})
	require.NoError(t, err)
	require.Equal(t, "application/json", req.Header.Get("Accept"))
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	b, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	require.JSONEq(t, `{"memo":"x"}`, string(b))

	req, err = lightning.NewJSONRequest(context.Background(), http.MethodGet, "https://node.example/v1/invoice/ab", nil)
	require.NoError(t, err)
	require.Equal(t, "application/json", req.Header.Get("Accept"))
	require.Empty(t, req.Header.Get("Content-Type"))
	require.Nil(t, req.Body)

	_, err = lightning.NewJSONRequest(context.Background(), http.MethodPost, "https://node.example/", func() {})
	require.ErrorContains(t, err, "encode request")
}
