package lightningtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	timmy "github.com/timmyhq/timmy"
)

// RequireCode checks err is a timmy error with code and, unless msg is
// empty, exactly the message msg: what the service passes on to a buyer or
// an operator, so backends' tests pin it down.
func RequireCode(t testing.TB, err error, code, msg string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, timmy.ErrorCode(err), "error: %v", err)
	if msg != "" {
		require.Equal(t, msg, timmy.ErrorMessage(err))
	}
}

// Unpayable is a refund invoice a backend must refuse before paying
// anything, when Owed sats are owed, with the EINVALID message the buyer
// then sees.
type Unpayable struct {
	Name           string
	PaymentRequest string
	Owed           timmy.Sats
	Message        string
}

// UnpayableInvoices returns the refund invoices every backend refuses up
// front: for the wrong amount, for none, expired, for a fraction of a sat,
// and not BOLT11 at all. Every backend's PayInvoice checks with
// lightning.ValidatePayable before it pays, so each backend's tests run all
// of them. invoice makes the buyer's invoices, usually a fake's
// BuyerInvoiceWith.
func UnpayableInvoices(invoice func(InvoiceOptions) string) []Unpayable {
	return []Unpayable{
		{"wrong amount", invoice(InvoiceOptions{AmountMsat: 43_000, Expiry: time.Hour, Memo: "refund"}), 42,
			"the invoice is for 43 sats but the amount owed is exactly 42 sats"},
		{"amountless", invoice(InvoiceOptions{Expiry: time.Hour}), 42,
			"the invoice has no amount; make one for exactly 42 sats"},
		{"expired", invoice(InvoiceOptions{AmountMsat: 42_000, CreatedAt: time.Now().Add(-2 * time.Hour), Expiry: time.Hour}), 42,
			"the invoice has expired; make a new one"},
		{"sub-sat", invoice(InvoiceOptions{AmountMsat: 42_500, Expiry: time.Hour}), 42,
			"the invoice is for 42500 msat but the amount owed is exactly 42 sats"},
		{"not bolt11", "hello", 42,
			"payment request is not a BOLT11 invoice for a known network (want lnbc, lntb, lntbs or lnbcrt)"},
	}
}
