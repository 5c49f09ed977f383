package store

import (
	"context"
	"fmt"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning/stub"
)

var _ stub.InvoiceStore = (*DB)(nil)

// CreateStubInvoice stores an invoice the stub Lightning backend issued.
func (s *DB) CreateStubInvoice(ctx context.Context, inv stub.Invoice) error {
	_, err := s.exec(ctx, nil, `INSERT INTO stub_invoices (payment_hash, payment_request, amount_sats, preimage,
		hold, status, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
		inv.PaymentHash.String(), inv.PaymentRequest, int64(inv.AmountSats), inv.Preimage.String(),
		inv.Hold, string(inv.Status), ms(inv.ExpiresAt), ms(inv.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert stub invoice: %w", err)
	}
	return nil
}

// GetStubInvoice returns a stub invoice, or ENOTFOUND.
func (s *DB) GetStubInvoice(ctx context.Context, hash timmy.PaymentHash) (*stub.Invoice, error) {
	var (
		inv                      stub.Invoice
		preimage, status         string
		amount, expires, created int64
	)
	err := s.db.QueryRowContext(ctx, s.q(`SELECT payment_request, amount_sats, preimage, hold, status, expires_at, created_at
		FROM stub_invoices WHERE payment_hash = $1`), hash.String()).
		Scan(&inv.PaymentRequest, &amount, &preimage, &inv.Hold, &status, &expires, &created)
	if isNoRows(err) {
		return nil, timmy.Errorf(timmy.ENOTFOUND, "no stub invoice with payment hash %s", hash)
	}
	if err != nil {
		return nil, fmt.Errorf("get stub invoice: %w", err)
	}
	if inv.Preimage, err = timmy.ParsePreimage(preimage); err != nil {
		return nil, fmt.Errorf("stored stub preimage: %w", err)
	}
	inv.PaymentHash = hash
	inv.AmountSats = timmy.Sats(amount)
	inv.Status = timmy.InvoiceStatus(status)
	inv.ExpiresAt = fromMS(expires)
	inv.CreatedAt = fromMS(created)
	return &inv, nil
}

// UpdateStubInvoiceStatus moves a stub invoice from one status to another
// and reports whether it did.
func (s *DB) UpdateStubInvoiceStatus(ctx context.Context, hash timmy.PaymentHash, from, to timmy.InvoiceStatus, at time.Time) (bool, error) {
	n, err := s.exec(ctx, nil, `UPDATE stub_invoices SET status = $1, updated_at = $2 WHERE payment_hash = $3 AND status = $4`,
		string(to), ms(at), hash.String(), string(from))
	if err != nil {
		return false, fmt.Errorf("update stub invoice: %w", err)
	}
	return n == 1, nil
}
