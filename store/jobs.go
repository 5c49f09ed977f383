package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/timmyhq/timmy"
)

var _ timmy.JobStore = (*DB)(nil)

const jobColumns = `id, request, state, eval_model, reason, result, error_message, evaluated_at,
	quote_model, quote_input_tokens, quote_output_tokens, quote_cost_usd, quote_infra_usd,
	quote_margin_pct, quote_btc_price_usd, quote_btc_price_source, quote_amount_sats,
	ledger_model, ledger_input_tokens, ledger_output_tokens, ledger_cost_usd,
	ledger_charged_sats, ledger_btc_price_usd, ledger_tokens_estimated,
	refund_owed_sats, refund_paid_sats, refund_pending_sats, refund_state,
	refund_payment_request, refund_payment_hash, refund_failure_reason,
	created_at, updated_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanJob(row rowScanner) (*timmy.Job, error) {
	var (
		j                                      timmy.Job
		id                                     string
		state                                  string
		result                                 sql.NullString
		evaluatedAt                            sql.NullInt64
		qModel, qSource                        sql.NullString
		qIn, qOut, qAmount                     sql.NullInt64
		qCost, qInfra, qMargin, qPrice         sql.NullFloat64
		lModel                                 sql.NullString
		lIn, lOut, lCharged                    sql.NullInt64
		lCost, lPrice                          sql.NullFloat64
		lEstimated                             bool
		refundOwed, refundPaid, refundPending  int64
		refundState, refundRequest, refundHash sql.NullString
		refundFailure                          string
		createdAt, updatedAt                   int64
	)
	err := row.Scan(&id, &j.Request, &state, &j.EvalModel, &j.Reason, &result, &j.ErrorMessage, &evaluatedAt,
		&qModel, &qIn, &qOut, &qCost, &qInfra, &qMargin, &qPrice, &qSource, &qAmount,
		&lModel, &lIn, &lOut, &lCost, &lCharged, &lPrice, &lEstimated,
		&refundOwed, &refundPaid, &refundPending, &refundState, &refundRequest, &refundHash, &refundFailure,
		&createdAt, &updatedAt)
	if err != nil {
		return nil, err
	}
	if j.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("stored job id %q: %w", id, err)
	}
	j.State = timmy.JobState(state)
	j.Result = result.String
	j.EvaluatedAt = fromNullMS(evaluatedAt)
	if qAmount.Valid {
		j.Quote = &timmy.Quote{
			Model: qModel.String, EstimatedInputTokens: qIn.Int64, EstimatedOutputTokens: qOut.Int64,
			EstimatedCostUSD: qCost.Float64, InfraCostUSD: qInfra.Float64, MarginPct: qMargin.Float64,
			BTCPriceUSD: qPrice.Float64, BTCPriceSource: qSource.String, AmountSats: timmy.Sats(qAmount.Int64),
		}
	}
	if lCharged.Valid {
		j.Ledger = &timmy.CostLedger{
			Model: lModel.String, ActualInputTokens: lIn.Int64, ActualOutputTokens: lOut.Int64,
			ActualCostUSD: lCost.Float64, ChargedSats: timmy.Sats(lCharged.Int64), BTCPriceUSD: lPrice.Float64,
			TokensEstimated: lEstimated,
		}
	}
	if refundState.Valid {
		r := &timmy.Refund{
			State:          timmy.RefundState(refundState.String),
			PaymentRequest: refundRequest.String,
			PaymentHash:    refundHash.String,
			FailureReason:  refundFailure,
		}
		switch r.State {
		case timmy.RefundPaid:
			r.AmountSats = timmy.Sats(refundPaid)
		case timmy.RefundPending:
			r.AmountSats = timmy.Sats(refundPending)
		default:
			r.AmountSats = timmy.Sats(refundOwed - refundPaid)
		}
		j.Refund = r
	}
	j.CreatedAt = fromMS(createdAt)
	j.UpdatedAt = fromMS(updatedAt)
	return &j, nil
}

// CreateJob stores a new job with its eval invoice, atomically.
func (s *DB) CreateJob(ctx context.Context, job *timmy.Job, evalInvoice *timmy.Invoice) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO jobs (id, request, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)`,
			job.ID.String(), job.Request, string(job.State), ms(job.CreatedAt), ms(job.UpdatedAt)); err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		if err := s.insertInvoice(ctx, tx, evalInvoice); err != nil {
			return err
		}
		return s.recordEvent(ctx, tx, job.ID.String(), "", job.State, job.CreatedAt)
	})
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	return nil
}

func (s *DB) recordEvent(ctx context.Context, tx *sql.Tx, jobID string, from, to timmy.JobState, at time.Time) error {
	if _, err := s.exec(ctx, tx, `INSERT INTO job_events (job_id, from_state, to_state, at) VALUES ($1, $2, $3, $4)`,
		jobID, string(from), string(to), ms(at)); err != nil {
		return fmt.Errorf("record job event: %w", err)
	}
	return nil
}

// GetJob returns a job with its invoices, or ENOTFOUND.
func (s *DB) GetJob(ctx context.Context, id string) (*timmy.Job, error) {
	job, err := scanJob(s.db.QueryRowContext(ctx, s.q(`SELECT `+jobColumns+` FROM jobs WHERE id = $1`), id))
	if isNoRows(err) {
		return nil, timmy.Errorf(timmy.ENOTFOUND, "job not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	invoices, err := s.jobInvoices(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, inv := range invoices {
		switch inv.Kind {
		case timmy.InvoiceEval:
			job.EvalInvoice = inv
		case timmy.InvoiceWork:
			job.WorkInvoice = inv
		}
	}
	return job, nil
}

// TransitionJob applies t if the job is still in t.From, and reports whether
// this call made the change. The state change, its fields, the work invoice
// and the audit event are written in one transaction.
func (s *DB) TransitionJob(ctx context.Context, t timmy.Transition) (bool, error) {
	sets := []string{"state = $1", "updated_at = $2", "lease_owner = NULL", "lease_until = NULL"}
	args := []any{string(t.To), ms(t.At)}
	set := func(col string, v any) {
		args = append(args, v)
		sets = append(sets, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if t.EvalModel != nil {
		set("eval_model", *t.EvalModel)
	}
	if t.Reason != nil {
		set("reason", *t.Reason)
	}
	if t.Result != nil {
		set("result", *t.Result)
	}
	if t.ErrorMessage != nil {
		set("error_message", *t.ErrorMessage)
	}
	if t.EvaluatedAt != nil {
		set("evaluated_at", ms(*t.EvaluatedAt))
	}
	if q := t.Quote; q != nil {
		set("quote_model", q.Model)
		set("quote_input_tokens", q.EstimatedInputTokens)
		set("quote_output_tokens", q.EstimatedOutputTokens)
		set("quote_cost_usd", q.EstimatedCostUSD)
		set("quote_infra_usd", q.InfraCostUSD)
		set("quote_margin_pct", q.MarginPct)
		set("quote_btc_price_usd", q.BTCPriceUSD)
		set("quote_btc_price_source", q.BTCPriceSource)
		set("quote_amount_sats", int64(q.AmountSats))
	}
	if l := t.Ledger; l != nil {
		set("ledger_model", l.Model)
		set("ledger_input_tokens", l.ActualInputTokens)
		set("ledger_output_tokens", l.ActualOutputTokens)
		set("ledger_cost_usd", l.ActualCostUSD)
		set("ledger_charged_sats", int64(l.ChargedSats))
		set("ledger_btc_price_usd", l.BTCPriceUSD)
		set("ledger_tokens_estimated", l.TokensEstimated)
	}
	args = append(args, t.JobID, string(t.From))
	where := fmt.Sprintf("id = $%d AND state = $%d", len(args)-1, len(args))
	if t.Owner != "" {
		args = append(args, t.Owner)
		where += fmt.Sprintf(" AND lease_owner = $%d", len(args))
	}
	query := "UPDATE jobs SET " + strings.Join(sets, ", ") + " WHERE " + where

	won := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, query, args...)
		if err != nil {
			return fmt.Errorf("update job: %w", err)
		}
		if n == 0 {
			return nil
		}
		won = true
		if t.WorkInvoice != nil {
			if err := s.insertInvoice(ctx, tx, t.WorkInvoice); err != nil {
				return err
			}
		}
		return s.recordEvent(ctx, tx, t.JobID, t.From, t.To, t.At)
	})
	if err != nil {
		return false, fmt.Errorf("transition job %s %s→%s: %w", t.JobID, t.From, t.To, err)
	}
	return won, nil
}

// ClaimJob leases one job in a working state whose lease is free or lapsed.
// The UPDATE re-checks the lease, so when replicas race for a job exactly
// one of them gets it.
func (s *DB) ClaimJob(ctx context.Context, owner string, now, until time.Time) (*timmy.Job, error) {
	const claimable = `state IN ('evaluating', 'executing') AND (lease_until IS NULL OR lease_until < $3)`
	var id string
	err := s.db.QueryRowContext(ctx, s.q(`UPDATE jobs SET lease_owner = $1, lease_until = $2
		WHERE id = (SELECT id FROM jobs WHERE `+claimable+` ORDER BY updated_at LIMIT 1)
		AND `+claimable+` RETURNING id`), owner, ms(until), ms(now)).Scan(&id)
	if isNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", err)
	}
	return s.GetJob(ctx, id)
}

// ExtendLease pushes the lease of a job this owner holds.
func (s *DB) ExtendLease(ctx context.Context, jobID, owner string, until time.Time) (bool, error) {
	n, err := s.exec(ctx, nil, `UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3`, ms(until), jobID, owner)
	if err != nil {
		return false, fmt.Errorf("extend lease: %w", err)
	}
	return n == 1, nil
}

// CountJobsByState counts jobs in each state.
func (s *DB) CountJobsByState(ctx context.Context) (map[timmy.JobState]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	counts := map[timmy.JobState]int64{}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		counts[timmy.JobState(state)] = n
	}
	return counts, rows.Err()
}

// JobEvent is one recorded state change.
type JobEvent struct {
	From, To timmy.JobState
	At       time.Time
}

// JobEvents returns a job's state changes in order. Tests use it to prove a
// transition happened exactly once.
func (s *DB) JobEvents(ctx context.Context, jobID string) ([]JobEvent, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT from_state, to_state, at FROM job_events WHERE job_id = $1 ORDER BY id`), jobID)
	if err != nil {
		return nil, fmt.Errorf("job events: %w", err)
	}
	defer rows.Close()
	var events []JobEvent
	for rows.Next() {
		var from, to string
		var at int64
		if err := rows.Scan(&from, &to, &at); err != nil {
			return nil, fmt.Errorf("job events: %w", err)
		}
		events = append(events, JobEvent{From: timmy.JobState(from), To: timmy.JobState(to), At: fromMS(at)})
	}
	return events, rows.Err()
}
