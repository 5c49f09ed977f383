package store

import (
	"context"
	"fmt"
	"time"

	"github.com/timmyhq/timmy"
)

// ClaimRefund records the buyer's invoice for a job's owed refund and marks
// it pending, in one conditional update, so that of many concurrent claims
// exactly one is recorded and paid. It returns the refund as it stands after
// the call and whether this call made the claim.
func (s *DB) ClaimRefund(ctx context.Context, jobID string, claim timmy.RefundClaim) (*timmy.Refund, bool, error) {
	n, err := s.exec(ctx, nil, `UPDATE jobs SET refund_state = 'pending', refund_payment_request = $1,
		refund_payment_hash = $2, refund_pending_sats = refund_owed_sats - refund_paid_sats,
		refund_failure_reason = '', updated_at = $3
		WHERE id = $4 AND refund_state = 'owed' AND refund_owed_sats - refund_paid_sats = $5`,
		claim.PaymentRequest, claim.PaymentHash, ms(claim.At), jobID, int64(claim.AmountSats))
	if err != nil {
		return nil, false, fmt.Errorf("claim refund: %w", err)
	}
	job, err := s.GetJob(ctx, jobID)
	if err != nil {
		return nil, false, err
	}
	return job.Refund, n == 1, nil
}

// FinishRefund records the outcome of a pending refund payment. A failed
// payment returns the refund to owed, so the buyer can claim it again with a
// new invoice; a successful one adds to what was paid.
func (s *DB) FinishRefund(ctx context.Context, jobID, paymentHash string, succeeded bool, failureReason string, at time.Time) (bool, error) {
	var n int64
	var err error
	if succeeded {
		n, err = s.exec(ctx, nil, `UPDATE jobs SET
			refund_paid_sats = refund_paid_sats + refund_pending_sats,
			refund_state = CASE WHEN refund_owed_sats > refund_paid_sats + refund_pending_sats THEN 'owed' ELSE 'paid' END,
			refund_pending_sats = 0, updated_at = $1
			WHERE id = $2 AND refund_state = 'pending' AND refund_payment_hash = $3`, ms(at), jobID, paymentHash)
	} else {
		n, err = s.exec(ctx, nil, `UPDATE jobs SET refund_state = 'owed', refund_pending_sats = 0,
			refund_failure_reason = $1, updated_at = $2
			WHERE id = $3 AND refund_state = 'pending' AND refund_payment_hash = $4`, failureReason, ms(at), jobID, paymentHash)
	}
	if err != nil {
		return false, fmt.Errorf("finish refund: %w", err)
	}
	return n == 1, nil
}

// ListPendingRefunds returns jobs whose refund payment is in flight.
func (s *DB) ListPendingRefunds(ctx context.Context, limit int) ([]*timmy.Job, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+jobColumns+` FROM jobs WHERE refund_state = 'pending' ORDER BY updated_at LIMIT $1`), limit)
	if err != nil {
		return nil, fmt.Errorf("list pending refunds: %w", err)
	}
	defer rows.Close()
	var jobs []*timmy.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("scan job: %w", err)
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}
