// Package lightning holds what every Lightning backend shares. Its BOLT11
// decoder lets the service read invoices the same way whichever node issued
// them, check what a backend handed back, and refuse a buyer's refund
// invoice before any money moves. Its signer issues the invoices of Timmy's
// own node keys (the stub backend's and the test fakes'), and the backends
// share their defaults, expiry grace and request checks from here, so the
// service sees the same behaviour whichever backend is configured.
package lightning

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"

	timmy "github.com/timmyhq/timmy"
)

// The network names Decode reports. They are Timmy's own, not chaincfg's
// ("testnet3"), so configuration and logs read the same on every backend.
const (
	NetworkMainnet = "mainnet"
	NetworkTestnet = "testnet"
	NetworkSignet  = "signet"
	NetworkRegtest = "regtest"
)

// MinPayableExpiry is how much life an invoice must have left for the
// service to pay it. A refund invoice that expires while the payment is
// being routed fails anyway, so it is refused up front with a clear message.
const MinPayableExpiry = 10 * time.Second

// networks maps a BOLT11 human-readable prefix to its chain. It is ordered
// longest prefix first: "lnbcrt" (regtest) also starts with "lnbc"
// (mainnet), and "lntbs" (signet) also starts with "lntb" (testnet).
var networks = []struct {
	prefix string
	name   string
	params *chaincfg.Params
}{
	{"lnbcrt", NetworkRegtest, &chaincfg.RegressionNetParams},
	{"lntbs", NetworkSignet, &chaincfg.SigNetParams},
	{"lntb", NetworkTestnet, &chaincfg.TestNet3Params},
	{"lnbc", NetworkMainnet, &chaincfg.MainNetParams},
}

// Decoded is what the service needs to know about a BOLT11 invoice.
type Decoded struct {
	// PaymentHash identifies the invoice.
	PaymentHash timmy.PaymentHash
	// AmountMsat is the amount asked for in millisatoshis, or zero when the
	// invoice leaves the amount to the payer.
	AmountMsat int64
	// AmountSats is the amount in whole sats. It is zero when the invoice
	// has no amount or asks for a fraction of a sat, because Timmy never
	// rounds a charge or a refund.
	AmountSats timmy.Sats
	// CreatedAt is the invoice's timestamp.
	CreatedAt time.Time
	// ExpiresAt is when the invoice stops being payable: its timestamp plus
	// its expiry (BOLT11's default of one hour when it names none).
	ExpiresAt time.Time
	// Network is mainnet, testnet, signet or regtest.
	Network string
	// Description is the invoice's memo, empty when it commits to a
	// description hash instead.
	Description string
}

// Decode reads a BOLT11 payment request. It accepts what buyers paste: any
// letter case, surrounding spaces and a "lightning:" URI prefix. The chain is
// chosen from the invoice's own prefix, so one decoder serves every network.
// Errors are EINVALID coded errors, so a handler can pass user input in.
func Decode(paymentRequest string) (Decoded, error) {
	s := strings.ToLower(strings.TrimSpace(paymentRequest))
	s = strings.TrimPrefix(s, "lightning:")
	if s == "" {
		return Decoded{}, timmy.Errorf(timmy.EINVALID, "payment request is empty")
	}
	for _, n := range networks {
		if !strings.HasPrefix(s, n.prefix) {
			continue
		}
		inv, err := zpay32.Decode(s, n.params)
		if err != nil {
			return Decoded{}, timmy.Errorf(timmy.EINVALID, "payment request is not a valid BOLT11 invoice: %v", err)
		}
		return decoded(inv, n.name)
	}
	return Decoded{}, timmy.Errorf(timmy.EINVALID,
		"payment request is not a BOLT11 invoice for a known network (want lnbc, lntb, lntbs or lnbcrt)")
}

func decoded(inv *zpay32.Invoice, network string) (Decoded, error) {
	if inv.PaymentHash == nil {
		return Decoded{}, timmy.Errorf(timmy.EINVALID, "payment request has no payment hash")
	}
	d := Decoded{
		PaymentHash: timmy.PaymentHash(*inv.PaymentHash),
		CreatedAt:   inv.Timestamp,
		ExpiresAt:   inv.Timestamp.Add(inv.Expiry()),
		Network:     network,
	}
	if inv.Description != nil {
		d.Description = *inv.Description
	}
	if inv.MilliSat != nil {
		msat := uint64(*inv.MilliSat)
		if msat > math.MaxInt64 {
			return Decoded{}, timmy.Errorf(timmy.EINVALID, "payment request amount is too large")
		}
		d.AmountMsat = int64(msat)
		if d.AmountMsat%1000 == 0 {
			d.AmountSats = timmy.Sats(d.AmountMsat / 1000)
		}
	}
	return d, nil
}

// ValidatePayable decodes a payment request the service is about to pay and
// checks it asks for exactly amount and will not expire in the next
// MinPayableExpiry. Each problem is an EINVALID error whose message tells the
// buyer what to fix, so a refund claim with a bad invoice is a 400 and no
// money moves.
func ValidatePayable(paymentRequest string, amount timmy.Sats, now time.Time) (Decoded, error) {
	d, err := Decode(paymentRequest)
	if err != nil {
		return Decoded{}, err
	}
	switch {
	case d.AmountMsat == 0:
		return d, timmy.Errorf(timmy.EINVALID,
			"the invoice has no amount; make one for exactly %d sats", amount)
	case d.AmountMsat != amount.Msat():
		return d, timmy.Errorf(timmy.EINVALID,
			"the invoice is for %s but the amount owed is exactly %d sats", formatMsat(d.AmountMsat), amount)
	case !now.Before(d.ExpiresAt):
		return d, timmy.Errorf(timmy.EINVALID, "the invoice has expired; make a new one")
	case d.ExpiresAt.Sub(now) < MinPayableExpiry:
		return d, timmy.Errorf(timmy.EINVALID,
			"the invoice expires in less than %s; make a new one", MinPayableExpiry)
	}
	return d, nil
}

// formatMsat renders an amount as whole sats when it is one, and as msat
// otherwise, so error messages never show a rounded figure.
func formatMsat(msat int64) string {
	if msat%1000 == 0 {
		return fmt.Sprintf("%d sats", msat/1000)
	}
	return fmt.Sprintf("%d msat", msat)
}
