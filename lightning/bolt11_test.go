package lightning_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
	"github.com/timmyhq/timmy/lightning/lightningtest"
)

// fixture signs invoices with a throwaway node, all at one fixed time.
type fixture struct {
	t    *testing.T
	node *lightningtest.Node
	now  time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	t.Parallel()
	return &fixture{t: t, node: lightningtest.NewNode(t), now: time.Unix(1_800_000_000, 0)}
}

type invoiceOpts struct {
	network string // "" means regtest
	msat    int64  // 0 means no amount
	expiry  time.Duration
	memo    string
}

func (f *fixture) encode(o invoiceOpts) (string, timmy.PaymentHash) {
	f.t.Helper()
	if o.memo == "" {
		o.memo = "test"
	}
	pr, hash, _, err := f.node.Sign(lightningtest.InvoiceOptions{
		AmountMsat: o.msat, CreatedAt: f.now, Expiry: o.expiry, Memo: o.memo, Network: o.network,
	})
	require.NoError(f.t, err)
	return pr, hash
}

func TestDecodePicksNetworkFromPrefix(t *testing.T) {
	f := setup(t)
	cases := []struct {
		network string
		prefix  string
		name    string
	}{
		{"mainnet", "lnbc", lightning.NetworkMainnet},
		{"testnet", "lntb", lightning.NetworkTestnet},
		{"signet", "lntbs", lightning.NetworkSignet},
		{"regtest", "lnbcrt", lightning.NetworkRegtest},
	}
	for _, c := range cases {
		pr, hash := f.encode(invoiceOpts{network: c.network, msat: 21_000, expiry: 10 * time.Minute, memo: "eval fee"})
		require.True(t, strings.HasPrefix(pr, c.prefix+"21"), "%s invoice %s", c.name, pr)

		d, err := lightning.Decode(pr)
		require.NoError(t, err, c.name)
		require.Equal(t, c.name, d.Network)
		require.Equal(t, hash, d.PaymentHash)
		require.Equal(t, int64(21_000), d.AmountMsat)
		require.Equal(t, timmy.Sats(21), d.AmountSats)
		require.True(t, f.now.Equal(d.CreatedAt))
		require.True(t, f.now.Add(10*time.Minute).Equal(d.ExpiresAt))
		require.Equal(t, "eval fee", d.Description)
	}
}

func TestDecodeAcceptsWhatBuyersPaste(t *testing.T) {
	f := setup(t)
	pr, hash := f.encode(invoiceOpts{msat: 5_000})
	for _, in := range []string{
		strings.ToUpper(pr),
		"  " + pr + "\n",
		"lightning:" + pr,
		"LIGHTNING:" + strings.ToUpper(pr),
	} {
		d, err := lightning.Decode(in)
		require.NoError(t, err, in)
		require.Equal(t, hash, d.PaymentHash)
		require.Equal(t, timmy.Sats(5), d.AmountSats)
	}
}

func TestDecodeAmountlessAndSubSat(t *testing.T) {
	f := setup(t)

	pr, _ := f.encode(invoiceOpts{})
	d, err := lightning.Decode(pr)
	require.NoError(t, err)
	require.Zero(t, d.AmountMsat)
	require.Zero(t, d.AmountSats)
	// BOLT11's default expiry is one hour.
	require.True(t, f.now.Add(time.Hour).Equal(d.ExpiresAt))

	pr, _ = f.encode(invoiceOpts{msat: 1_500})
	d, err = lightning.Decode(pr)
	require.NoError(t, err)
	require.Equal(t, int64(1_500), d.AmountMsat)
	require.Zero(t, d.AmountSats, "a fraction of a sat is never rounded")
}

func TestDecodeRejectsGarbage(t *testing.T) {
	f := setup(t)
	pr, _ := f.encode(invoiceOpts{msat: 1_000})
	// Flip one data character so the bech32 checksum fails.
	i := len(pr) - 10
	c := byte('q')
	if pr[i] == 'q' {
		c = 'p'
	}
	tampered := pr[:i] + string(c) + pr[i+1:]

	for name, in := range map[string]string{
		"empty":       "   ",
		"not bolt11":  "hello",
		"unknown hrp": "lnsb1" + strings.TrimPrefix(pr, "lnbcrt10n1"),
		"checksum":    tampered,
		"bitcoin":     "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
	} {
		_, err := lightning.Decode(in)
		require.Error(t, err, name)
		require.Equal(t, timmy.EINVALID, timmy.ErrorCode(err), name)
	}
}

func TestValidatePayable(t *testing.T) {
	f := setup(t)
	good, hash := f.encode(invoiceOpts{msat: 42_000, expiry: time.Hour})
	d, err := lightning.ValidatePayable(good, 42, f.now)
	require.NoError(t, err)
	require.Equal(t, hash, d.PaymentHash)

	amountless, _ := f.encode(invoiceOpts{expiry: time.Hour})
	subSat, _ := f.encode(invoiceOpts{msat: 42_001, expiry: time.Hour})
	short, _ := f.encode(invoiceOpts{msat: 42_000, expiry: 5 * time.Second})

	cases := []struct {
		name string
		pr   string
		now  time.Time
		want string
	}{
		{"wrong amount", good, f.now, "the invoice is for 42 sats but the amount owed is exactly 41 sats"},
		{"amountless", amountless, f.now, "the invoice has no amount; make one for exactly 41 sats"},
		{"sub-sat", subSat, f.now, "the invoice is for 42001 msat but the amount owed is exactly 41 sats"},
		{"expired", good, f.now.Add(time.Hour), "the invoice has expired; make a new one"},
		{"expiring", short, f.now, "the invoice expires in less than 10s; make a new one"},
		{"garbage", "lnbcrt1nonsense", f.now, "payment request is not a valid BOLT11 invoice"},
	}
	for _, c := range cases {
		_, err := lightning.ValidatePayable(c.pr, 41, c.now)
		if c.name == "expired" || c.name == "expiring" {
			_, err = lightning.ValidatePayable(c.pr, 42, c.now)
		}
		require.Error(t, err, c.name)
		require.Equal(t, timmy.EINVALID, timmy.ErrorCode(err), c.name)
		require.Contains(t, timmy.ErrorMessage(err), c.want, c.name)
	}
}
