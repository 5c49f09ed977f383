// Package lightningtest is what the Lightning backends' tests and fake nodes
// share: a throwaway node that signs real BOLT11 invoices with
// lightning.SignInvoice, a buyer's node that asks for refunds, canned HTTP
// responses, and checks every backend must pass. Keeping them in one place
// means the lnbits and lnd fakes issue invoices exactly alike, so a
// difference in a backend's tests is a difference in the backend.
package lightningtest

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// InvoiceOptions describes an invoice for Node.Sign and
// Buyer.BuyerInvoiceWith. Zero values mean: no amount, created now,
// BOLT11's default one-hour expiry, regtest.
type InvoiceOptions struct {
	AmountMsat int64
	CreatedAt  time.Time
	Expiry     time.Duration
	Memo       string
	// Network picks the chain params: mainnet, testnet, signet or regtest.
	Network string
}

// Node signs real BOLT11 invoices with a throwaway key, so the code under
// test decodes and checks them as it would a real node's.
type Node struct {
	key *btcec.PrivateKey
}

// NewNode makes a node with a fresh key. It fails the test if no key can be
// made, since nothing else in a fake works without one.
func NewNode(t testing.TB) *Node {
	t.Helper()
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatalf("lightningtest: node key: %v", err)
	}
	return &Node{key: key}
}

// Sign makes an invoice for a fresh random preimage, as a node does for a
// plain invoice, and returns it with its payment hash and preimage.
func (n *Node) Sign(o InvoiceOptions) (pr string, hash timmy.PaymentHash, pre timmy.Preimage, err error) {
	pre, err = timmy.NewPreimage()
	if err != nil {
		return "", hash, pre, fmt.Errorf("preimage: %w", err)
	}
	hash = sha256.Sum256(pre[:])
	pr, err = n.SignHash(hash, o)
	return pr, hash, pre, err
}

// SignHash makes an invoice locked to hash, as a node does for a hold
// invoice whose preimage only the service knows.
func (n *Node) SignHash(hash timmy.PaymentHash, o InvoiceOptions) (string, error) {
	chain, err := networkParams(o.Network)
	if err != nil {
		return "", err
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = time.Now()
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("payment secret: %w", err)
	}
	return lightning.SignInvoice(n.key, lightning.Invoice{
		Chain:       chain,
		PaymentHash: hash,
		PaymentAddr: secret,
		AmountMsat:  o.AmountMsat,
		CreatedAt:   o.CreatedAt,
		Expiry:      o.Expiry,
		Memo:        o.Memo,
	})
}

// networkParams maps InvoiceOptions.Network to chain params. It is kept
// apart from package lightning's own table, so a mistake there shows up as
// a wrong prefix in tests rather than being signed and decoded alike.
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

// Buyer is a buyer's own node, apart from the fake node that issues the
// service's invoices: it makes the invoices a buyer sends to be refunded
// to. Fakes embed it, so a test calls fake.BuyerInvoice whichever backend
// it runs against.
type Buyer struct {
	t    testing.TB
	node *Node
}

// NewBuyer makes a buyer's node for the test t, which it fails when an
// invoice cannot be made.
func NewBuyer(t testing.TB) *Buyer {
	t.Helper()
	return &Buyer{t: t, node: NewNode(t)}
}

// BuyerInvoice makes a regtest invoice for exactly sats, valid for an hour:
// what a buyer sends to claim a refund.
func (b *Buyer) BuyerInvoice(sats timmy.Sats) string {
	return b.BuyerInvoiceWith(InvoiceOptions{AmountMsat: sats.Msat(), Expiry: time.Hour, Memo: "refund"})
}

// BuyerInvoiceWith makes a buyer's invoice with the given options, e.g. an
// expired, amountless or mainnet one.
func (b *Buyer) BuyerInvoiceWith(o InvoiceOptions) string {
	b.t.Helper()
	pr, _, _, err := b.node.Sign(o)
	if err != nil {
		b.t.Fatalf("lightningtest: buyer invoice: %v", err)
	}
	return pr
}
