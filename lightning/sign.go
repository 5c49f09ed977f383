package lightning

import (
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"

	timmy "github.com/timmyhq/timmy"
)

// Invoice is what SignInvoice writes into a BOLT11 invoice. A zero
// optional field is left out, so the invoice takes BOLT11's default for it.
type Invoice struct {
	// Chain picks the invoice's network, and so its prefix (lnbcrt for
	// regtest). It is required.
	Chain *chaincfg.Params
	// PaymentHash is the hash the payer's preimage must match.
	PaymentHash timmy.PaymentHash
	// PaymentAddr is the payment secret, which should differ per invoice.
	// Optional.
	PaymentAddr [32]byte
	// AmountMsat is the amount asked for. Optional: zero leaves the amount
	// to the payer.
	AmountMsat int64
	// CreatedAt is the invoice's timestamp. BOLT11 keeps whole seconds.
	CreatedAt time.Time
	// Expiry is how long after CreatedAt the invoice may be paid. Optional:
	// zero means BOLT11's default of one hour.
	Expiry time.Duration
	// Memo is the description, written even when empty, since BOLT11 wants
	// a description or a description hash.
	Memo string
	// CLTVExpiry is the final hop's CLTV delta in blocks. Optional: zero
	// means BOLT11's default of 18.
	CLTVExpiry uint64
}

// SignInvoice encodes inv as a BOLT11 payment request signed by key. It is
// the one way Timmy's own node keys issue invoices: the stub backend's, and
// the throwaway ones of the fake nodes in tests, so that Decode checks all
// of them exactly as it checks a real node's.
func SignInvoice(key *btcec.PrivateKey, inv Invoice) (string, error) {
	if key == nil {
		return "", errors.New("sign invoice: no node key")
	}
	if inv.Chain == nil {
		return "", errors.New("sign invoice: no chain")
	}
	opts := []func(*zpay32.Invoice){zpay32.Description(inv.Memo)}
	if inv.AmountMsat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(inv.AmountMsat)))
	}
	if inv.Expiry > 0 {
		opts = append(opts, zpay32.Expiry(inv.Expiry))
	}
	if inv.CLTVExpiry > 0 {
		opts = append(opts, zpay32.CLTVExpiry(inv.CLTVExpiry))
	}
	if inv.PaymentAddr != [32]byte{} {
		opts = append(opts, zpay32.PaymentAddr(inv.PaymentAddr))
	}
	unsigned, err := zpay32.NewInvoice(inv.Chain, inv.PaymentHash, inv.CreatedAt, opts...)
	if err != nil {
		return "", fmt.Errorf("build invoice: %w", err)
	}
	pr, err := unsigned.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(key, chainhash.HashB(msg), true), nil
	}})
	if err != nil {
		return "", fmt.Errorf("sign invoice: %w", err)
	}
	return pr, nil
}
