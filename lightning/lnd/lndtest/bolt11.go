package lndtest

import (
	"crypto/rand"
	"crypto/sha256"
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

// InvoiceOptions describes an invoice for BuyerInvoiceWith. Zero values
// mean: no amount, created now, BOLT11's default one-hour expiry, regtest.
type InvoiceOptions struct {
	AmountMsat int64
	CreatedAt  time.Time
	Expiry     time.Duration
	Memo       string
	// Network picks the chain params: mainnet, testnet, signet or regtest.
	Network string
}

// node signs real BOLT11 invoices with a throwaway key, so the client's
// decoder checks them as it would a real node's.
type node struct {
	key *btcec.PrivateKey
}

func newNode() (*node, error) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return &node{key: key}, nil
}

func networkParams(name string) (*chaincfg.Params, error) {
	switch name {
	case "", "regtest":
		return &chaincfg.RegressionNetParams, nil
	case "mainnet":
		return &chaincfg.MainNetParams, nil
	case "testnet":
		return &chaincfg.TestNet3Params, nil
	case "signet":
		return &chaincfg.SigNetParams, nil
	}
	return nil, fmt.Errorf("unknown network %q", name)
}

// sign makes an invoice for a fresh random preimage.
func (n *node) sign(o InvoiceOptions) (pr string, hash timmy.PaymentHash, pre timmy.Preimage, err error) {
	if _, err = rand.Read(pre[:]); err != nil {
		return "", hash, pre, err
	}
	hash = sha256.Sum256(pre[:])
	pr, err = n.signHash(hash, o)
	return pr, hash, pre, err
}

func (n *node) signHash(hash timmy.PaymentHash, o InvoiceOptions) (string, error) {
	params, err := networkParams(o.Network)
	if err != nil {
		return "", err
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = time.Now()
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", err
	}
	opts := []func(*zpay32.Invoice){zpay32.Description(o.Memo), zpay32.PaymentAddr(secret)}
	if o.AmountMsat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(o.AmountMsat)))
	}
	if o.Expiry > 0 {
		opts = append(opts, zpay32.Expiry(o.Expiry))
	}
	inv, err := zpay32.NewInvoice(params, hash, o.CreatedAt, opts...)
	if err != nil {
		return "", fmt.Errorf("new invoice: %w", err)
	}
	return inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(n.key, chainhash.HashB(msg), true), nil
	}})
}
