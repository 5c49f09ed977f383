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

// HitDemo counts one demo call by client in the window starting at
// windowStart, atomically, and returns the count so far.
func (s *DB) HitDemo(ctx context.Context, client string, windowStart time.Time) (int64, error) {
	var calls int64
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO demo_usage (client, window_start, calls) VALUES ($1, $2, 1)
		ON CONFLICT (client, window_start) DO UPDATE SET calls = demo_usage.calls + 1
		RETURNING calls`), client, ms(windowStart)).Scan(&calls)
	if err != nil {
		return 0, fmt.Errorf("count demo call: %w", err)
	}
	return calls, nil
}

// PruneDemoUsage deletes demo counters for windows that ended before cutoff.
func (s *DB) PruneDemoUsage(ctx context.Context, cutoff time.Time) error {
	if _, err := s.exec(ctx, nil, `DELETE FROM demo_usage WHERE window_start < $1`, ms(cutoff)); err != nil {
		return fmt.Errorf("prune demo usage: %w", err)
	}
	return nil
}

// LoadCursor returns a subscription's saved resume point, or 0.
func (s *DB) LoadCursor(ctx context.Context, name string) (uint64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM cursors WHERE name = $1`), name).Scan(&v)
	if isNoRows(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load cursor %s: %w", name, err)
	}
	return uint64(v), nil
}

// SaveCursor stores a subscription's resume point. It never moves a cursor
// backwards, so two replicas saving at once cannot lose progress.
func (s *DB) SaveCursor(ctx context.Context, name string, value uint64) error {
	_, err := s.exec(ctx, nil, `INSERT INTO cursors (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = CASE WHEN cursors.value > excluded.value THEN cursors.value ELSE excluded.value END`,
		name, int64(value))
	if err != nil {
		return fmt.Errorf("save cursor %s: %w", name, err)
	}
	return nil
}
