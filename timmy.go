// Package timmy holds Timmy's domain: the types every other package speaks
// (jobs, invoices, sats), the legal state transitions, the narrow interfaces
// that adapters implement (Lightning, Agent, Pricer, stores), and the one
// coded error type the HTTP layer turns into a status code.
//
// Nothing in this package talks to a database, a network or a clock of its
// own; adapters live in sub-packages and are wired together in cmd/timmy.
package timmy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
)

// Sats is an amount of bitcoin in satoshis. Charges are always integer sats,
// never floats, so that rounding can never create or destroy money.
type Sats int64

// Msat returns the amount in millisatoshis, the unit Lightning wire formats use.
func (s Sats) Msat() int64 { return int64(s) * 1000 }

// PaymentHash identifies a Lightning invoice. It is the SHA-256 of the
// invoice's preimage.
type PaymentHash [32]byte

// String renders the hash as the lowercase hex every API uses.
func (h PaymentHash) String() string { return hex.EncodeToString(h[:]) }

// ParsePaymentHash reads a 64-character hex payment hash. Anything else is an
// invalid-input error, so handlers can pass user input straight in.
func ParsePaymentHash(s string) (PaymentHash, error) {
	var h PaymentHash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, Errorf(EINVALID, "payment hash must be 64 hex characters")
	}
	copy(h[:], b)
	return h, nil
}

// Preimage is the secret whose hash locks an invoice. Revealing it settles
// the payment, so it is only ever handed to the Lightning backend.
type Preimage [32]byte

// NewPreimage draws a random preimage from the operating system.
func NewPreimage() (Preimage, error) {
	var p Preimage
	if _, err := rand.Read(p[:]); err != nil {
		return p, fmt.Errorf("draw preimage: %w", err)
	}
	return p, nil
}

// String renders the preimage as hex.
func (p Preimage) String() string { return hex.EncodeToString(p[:]) }

// ParsePreimage reads a 64-character hex preimage.
func ParsePreimage(s string) (Preimage, error) {
	var p Preimage
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(p) {
		return p, Errorf(EINVALID, "preimage must be 64 hex characters")
	}
	copy(p[:], b)
	return p, nil
}

// USDToSats converts a USD amount to sats at the given BTC/USD price. It
// rounds up and never returns less than 1 sat, so the service is never paid
// less than the cost it quoted and no invoice is for zero.
func USDToSats(usd, btcPriceUSD float64) Sats {
	if btcPriceUSD <= 0 || usd <= 0 || math.IsNaN(usd) || math.IsNaN(btcPriceUSD) {
		return 1
	}
	exact := usd * 1e8 / btcPriceUSD
	// Float division leaves noise (1 USD at 100000 is 1000.0000000000001
	// sats); a value that is an integer but for that noise must not be
	// rounded up to the next sat.
	sats := math.Ceil(exact)
	if nearest := math.Round(exact); math.Abs(exact-nearest) < 1e-6 {
		sats = nearest
	}
	if sats < 1 {
		return 1
	}
	return Sats(sats)
}
