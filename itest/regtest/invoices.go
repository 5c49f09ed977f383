//go:build itest

package regtest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Invoice states as lnd's REST API spells them.
const (
	InvoiceOpen     = "OPEN"
	InvoiceAccepted = "ACCEPTED"
	InvoiceSettled  = "SETTLED"
	InvoiceCanceled = "CANCELED"
)

// Invoice is the subset of lnd's Invoice message the tests use. Byte fields
// are base64 in lnd's JSON; RHash and RPreimage decode them to raw bytes.
type Invoice struct {
	Memo           string `json:"memo"`
	RHash          []byte `json:"r_hash"`
	RPreimage      []byte `json:"r_preimage"`
	Value          int64  `json:"value,string"`
	ValueMsat      int64  `json:"value_msat,string"`
	PaymentRequest string `json:"payment_request"`
	State          string `json:"state"`
	AmtPaidSat     int64  `json:"amt_paid_sat,string"`
	AmtPaidMsat    int64  `json:"amt_paid_msat,string"`
	SettleDate     int64  `json:"settle_date,string"`
	AddIndex       uint64 `json:"add_index,string"`
	SettleIndex    uint64 `json:"settle_index,string"`
}

// AddedInvoice is what creating an invoice returns.
type AddedInvoice struct {
	// RHash is the payment hash (set for plain invoices; for hold
	// invoices it is the hash the caller supplied).
	RHash          []byte `json:"r_hash"`
	PaymentRequest string `json:"payment_request"`
	AddIndex       uint64 `json:"add_index,string"`
	PaymentAddr    []byte `json:"payment_addr"`
}

// AddInvoice creates a plain invoice for sats via POST /v1/invoices; lnd
// picks the preimage and settles automatically when paid.
func (n *Node) AddInvoice(ctx context.Context, sats int64, memo string) (AddedInvoice, error) {
	req := map[string]any{"value": strconv.FormatInt(sats, 10), "memo": memo}
	var resp AddedInvoice
	if err := n.Do(ctx, http.MethodPost, "/v1/invoices", req, &resp); err != nil {
		return AddedInvoice{}, fmt.Errorf("add invoice: %w", err)
	}
	return resp, nil
}

// AddHoldInvoice creates a hold invoice for the given payment hash via POST
// /v2/invoices/hodl. A payment to it stays ACCEPTED (and the payer's
// payment IN_FLIGHT) until SettleInvoice or CancelInvoice is called.
func (n *Node) AddHoldInvoice(ctx context.Context, hash []byte, sats int64, memo string) (AddedInvoice, error) {
	req := map[string]any{
		"hash":  base64.StdEncoding.EncodeToString(hash),
		"value": strconv.FormatInt(sats, 10),
		"memo":  memo,
	}
	var resp AddedInvoice
	if err := n.Do(ctx, http.MethodPost, "/v2/invoices/hodl", req, &resp); err != nil {
		return AddedInvoice{}, fmt.Errorf("add hold invoice: %w", err)
	}
	resp.RHash = append([]byte(nil), hash...)
	return resp, nil
}

// SettleInvoice settles an ACCEPTED hold invoice by revealing its preimage
// (POST /v2/invoices/settle).
func (n *Node) SettleInvoice(ctx context.Context, preimage []byte) error {
	req := map[string]any{"preimage": base64.StdEncoding.EncodeToString(preimage)}
	if err := n.Do(ctx, http.MethodPost, "/v2/invoices/settle", req, nil); err != nil {
		return fmt.Errorf("settle invoice: %w", err)
	}
	return nil
}

// CancelInvoice cancels an invoice, failing any HTLCs held for it back to
// the payer (POST /v2/invoices/cancel).
func (n *Node) CancelInvoice(ctx context.Context, hash []byte) error {
	req := map[string]any{"payment_hash": base64.StdEncoding.EncodeToString(hash)}
	if err := n.Do(ctx, http.MethodPost, "/v2/invoices/cancel", req, nil); err != nil {
		return fmt.Errorf("cancel invoice: %w", err)
	}
	return nil
}

// LookupInvoice returns an invoice by payment hash via GET
// /v1/invoice/{r_hash_str}, which takes the hash hex encoded.
func (n *Node) LookupInvoice(ctx context.Context, hash []byte) (Invoice, error) {
	var inv Invoice
	if err := n.Do(ctx, http.MethodGet, "/v1/invoice/"+hex.EncodeToString(hash), nil, &inv); err != nil {
		return Invoice{}, fmt.Errorf("lookup invoice: %w", err)
	}
	return inv, nil
}

// LookupInvoiceV2 returns an invoice by payment hash via GET
// /v2/invoices/lookup?payment_hash=..., which takes the hash as padded
// URL-safe base64.
func (n *Node) LookupInvoiceV2(ctx context.Context, hash []byte) (Invoice, error) {
	q := url.Values{"payment_hash": {base64.URLEncoding.EncodeToString(hash)}}
	var inv Invoice
	if err := n.Do(ctx, http.MethodGet, "/v2/invoices/lookup?"+q.Encode(), nil, &inv); err != nil {
		return Invoice{}, fmt.Errorf("lookup invoice v2: %w", err)
	}
	return inv, nil
}

// SubscribeInvoice opens GET /v2/invoices/subscribe/{r_hash} (hash as
// padded URL-safe base64 in the path). Each Next(&Invoice{}) yields the
// invoice's full state: first its current state, then every change.
func (n *Node) SubscribeInvoice(ctx context.Context, hash []byte) (*Stream, error) {
	s, err := n.OpenStream(ctx, http.MethodGet, "/v2/invoices/subscribe/"+base64.URLEncoding.EncodeToString(hash), nil)
	if err != nil {
		return nil, fmt.Errorf("subscribe invoice: %w", err)
	}
	return s, nil
}

// WaitInvoiceState polls LookupInvoice until the invoice reaches state, for
// at most timeout. It gives up early if the invoice reaches a different
// final state (SETTLED or CANCELED).
func (n *Node) WaitInvoiceState(ctx context.Context, hash []byte, state string, timeout time.Duration) (Invoice, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var inv Invoice
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		inv, err = n.LookupInvoice(ctx, hash)
		if err != nil {
			return false, err
		}
		if inv.State == state {
			return true, nil
		}
		if inv.State == InvoiceSettled || inv.State == InvoiceCanceled {
			return false, &stopPolling{fmt.Errorf("invoice reached final state %s", inv.State)}
		}
		return false, fmt.Errorf("invoice state %s", inv.State)
	})
	if err != nil {
		return inv, fmt.Errorf("wait for invoice %x to be %s on %s: %w", hash, state, n.Name, err)
	}
	return inv, nil
}
