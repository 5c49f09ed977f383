package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/timmyhq/timmy"
)

const invoiceColumns = `payment_hash, job_id, kind, payment_request, amount_sats, status, hold,
	preimage, resolved, expires_at, paid_at, created_at`

func scanInvoice(row rowScanner) (*timmy.Invoice, error) {
	var (
		inv                      timmy.Invoice
		hash, kind, status       string
		preimage                 sql.NullString
		amount, expires, created int64
		paidAt                   sql.NullInt64
	)
	if err := row.Scan(&hash, &inv.JobID, &kind, &inv.PaymentRequest, &amount, &status, &inv.Hold,
		&preimage, &inv.Resolved, &expires, &paidAt, &created); err != nil {
		return nil, err
	}
	h, err := timmy.ParsePaymentHash(hash)
	if err != nil {
		return nil, fmt.Errorf("stored payment hash %q: %w", hash, err)
	}
	inv.PaymentHash = h
	if preimage.Valid {
		p, err := timmy.ParsePreimage(preimage.String)
		if err != nil {
			return nil, fmt.Errorf("stored preimage of %s: %w", hash, err)
		}
		inv.Preimage = &p
	}
	inv.Kind = timmy.InvoiceKind(kind)
	inv.Status = timmy.InvoiceStatus(status)
	inv.AmountSats = timmy.Sats(amount)
	inv.ExpiresAt = fromMS(expires)
	inv.PaidAt = fromNullMS(paidAt)
	inv.CreatedAt = fromMS(created)
	return &inv, nil
}

func (s *DB) insertInvoice(ctx context.Context, tx *sql.Tx, inv *timmy.Invoice) error {
	var preimage any
	if inv.Preimage != nil {
		preimage = inv.Preimage.String()
	}
	_, err := s.exec(ctx, tx, `INSERT INTO invoices (payment_hash, job_id, kind, payment_request, amount_sats,
		status, hold, preimage, resolved, expires_at, paid_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		inv.PaymentHash.String(), inv.JobID, string(inv.Kind), inv.PaymentRequest, int64(inv.AmountSats),
		string(inv.Status), inv.Hold, preimage, inv.Resolved, ms(inv.ExpiresAt), nullMS(inv.PaidAt), ms(inv.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert %s invoice: %w", inv.Kind, err)
	}
	return nil
}

func (s *DB) jobInvoices(ctx context.Context, jobID string) ([]*timmy.Invoice, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+invoiceColumns+` FROM invoices WHERE job_id = $1`), jobID)
	if err != nil {
		return nil, fmt.Errorf("job invoices: %w", err)
	}
	return collectInvoices(rows)
}

func collectInvoices(rows *sql.Rows) ([]*timmy.Invoice, error) {
	defer rows.Close()
	var out []*timmy.Invoice
	for rows.Next() {
		inv, err := scanInvoice(rows)
		if err != nil {
			return nil, fmt.Errorf("scan invoice: %w", err)
		}
		out = append(out, inv)
	}
	return out, rows.Err()
}

// GetInvoice returns an invoice by hash, or ENOTFOUND.
func (s *DB) GetInvoice(ctx context.Context, hash timmy.PaymentHash) (*timmy.Invoice, error) {
	inv, err := scanInvoice(s.db.QueryRowContext(ctx, s.q(`SELECT `+invoiceColumns+` FROM invoices WHERE payment_hash = $1`), hash.String()))
	if isNoRows(err) {
		return nil, timmy.Errorf(timmy.ENOTFOUND, "invoice not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get invoice: %w", err)
	}
	return inv, nil
}

// ListUnresolvedInvoices returns invoices whose money has not yet gone where
// their job's outcome says, oldest first, one page after another: the page
// after the invoice after, or the first page when after is nil.
func (s *DB) ListUnresolvedInvoices(ctx context.Context, after *timmy.Invoice, limit int) ([]*timmy.Invoice, error) {
	var afterCreated int64 = -1
	afterHash := ""
	if after != nil {
		afterCreated, afterHash = ms(after.CreatedAt), after.PaymentHash.String()
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+invoiceColumns+` FROM invoices
		WHERE resolved = FALSE AND (created_at > $1 OR (created_at = $1 AND payment_hash > $2))
		ORDER BY created_at, payment_hash LIMIT $3`), afterCreated, afterHash, limit)
	if err != nil {
		return nil, fmt.Errorf("list unresolved invoices: %w", err)
	}
	return collectInvoices(rows)
}

// UpdateInvoiceStatus moves an invoice from one of from to to, and reports
// whether it did. Moving to a paid status records paidAt once.
func (s *DB) UpdateInvoiceStatus(ctx context.Context, hash timmy.PaymentHash, from []timmy.InvoiceStatus, to timmy.InvoiceStatus, at time.Time) (bool, error) {
	args := []any{string(to), hash.String()}
	marks := make([]string, len(from))
	for i, f := range from {
		args = append(args, string(f))
		marks[i] = fmt.Sprintf("$%d", len(args))
	}
	paid := ""
	if to.Paid() {
		args = append(args, ms(at))
		paid = fmt.Sprintf(", paid_at = COALESCE(paid_at, $%d)", len(args))
	}
	n, err := s.exec(ctx, nil, `UPDATE invoices SET status = $1`+paid+`
		WHERE payment_hash = $2 AND status IN (`+strings.Join(marks, ", ")+`)`, args...)
	if err != nil {
		return false, fmt.Errorf("update invoice %s to %s: %w", hash, to, err)
	}
	return n == 1, nil
}

// ResolveInvoice marks an invoice resolved with its final status.
func (s *DB) ResolveInvoice(ctx context.Context, hash timmy.PaymentHash, status timmy.InvoiceStatus) (bool, error) {
	n, err := s.exec(ctx, nil, `UPDATE invoices SET resolved = TRUE, status = $1 WHERE payment_hash = $2 AND resolved = FALSE`,
		string(status), hash.String())
	if err != nil {
		return false, fmt.Errorf("resolve invoice %s: %w", hash, err)
	}
	return n == 1, nil
}

// ResolveInvoiceAsRefund marks a settled invoice resolved and adds its
// amount to its job's refund in one transaction, so a refund is owed exactly
// once however many workers see the same payment.
func (s *DB) ResolveInvoiceAsRefund(ctx context.Context, hash timmy.PaymentHash, at time.Time) (bool, error) {
	won := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, `UPDATE invoices SET resolved = TRUE WHERE payment_hash = $1 AND resolved = FALSE AND status = 'settled'`, hash.String())
		if err != nil || n == 0 {
			return err
		}
		won = true
		_, err = s.exec(ctx, tx, `UPDATE jobs SET
			refund_owed_sats = refund_owed_sats + (SELECT amount_sats FROM invoices WHERE payment_hash = $1),
			refund_state = CASE WHEN refund_state IS NULL OR refund_state = 'paid' THEN 'owed' ELSE refund_state END,
			updated_at = $2
			WHERE id = (SELECT job_id FROM invoices WHERE payment_hash = $1)`, hash.String(), ms(at))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record refund for %s: %w", hash, err)
	}
	return won, nil
}
