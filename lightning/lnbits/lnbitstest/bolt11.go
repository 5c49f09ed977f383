package lnbitstest

import (
	"errors"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"

	"github.com/timmyhq/timmy/lightning/lightningtest"
)

// InvoiceOptions describes a buyer's invoice for BuyerInvoiceWith. It is
// lightningtest's, so every fake's buyer makes invoices alike.
type InvoiceOptions = lightningtest.InvoiceOptions

// decode reads an invoice of any network, as LNbits does. Signet is tried
// before testnet, whose prefix lntb also begins signet's lntbs.
func decode(pr string) (*zpay32.Invoice, error) {
	for _, params := range []*chaincfg.Params{
		&chaincfg.RegressionNetParams, &chaincfg.SigNetParams, &chaincfg.TestNet3Params, &chaincfg.MainNetParams,
	} {
		if inv, err := zpay32.Decode(pr, params); err == nil {
			return inv, nil
		}
	}
	return nil, errors.New("not a BOLT11 invoice")
}
