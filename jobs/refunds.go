package jobs

import (
	"context"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// refundPayTimeout bounds how long a claim waits for the refund payment
// before answering "pending"; the reconcile tracks it to its end.
const refundPayTimeout = 60 * time.Second

// ClaimRefund pays the refund a job owes to the buyer's invoice, which must
// be for exactly the amount owed. The claim is recorded before paying, with
// a conditional update, so of any number of concurrent claims exactly one
// pays; repeating a claim returns the refund's current state.
func (s *Service) ClaimRefund(ctx context.Context, jobID, paymentRequest string) (*timmy.Refund, error) {
	job, err := s.store.GetJob(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if job.Refund == nil {
		return nil, timmy.Errorf(timmy.ECONFLICT, "this job owes no refund")
	}
	decoded, err := lightning.Decode(paymentRequest)
	if err != nil {
		return nil, timmy.Errorf(timmy.EINVALID, "paymentRequest is not a valid BOLT11 invoice: %v", timmy.ErrorMessage(err))
	}
	hash := decoded.PaymentHash.String()
	switch job.Refund.State {
	case timmy.RefundPending, timmy.RefundPaid:
		if job.Refund.PaymentHash == hash {
			return job.Refund, nil // the same claim again: idempotent
		}
		return nil, timmy.Errorf(timmy.ECONFLICT, "the refund is already %s to another invoice", job.Refund.State)
	}
	if s.payer == nil {
		return nil, timmy.Errorf(timmy.EUNAVAILABLE, "this Lightning backend cannot pay refunds")
	}
	if decoded.AmountSats != job.Refund.AmountSats {
		return nil, timmy.Errorf(timmy.EINVALID, "the invoice must be for exactly %d sats (it is for %d)", job.Refund.AmountSats, decoded.AmountSats)
	}
	if !s.now().Before(decoded.ExpiresAt) {
		return nil, timmy.Errorf(timmy.EINVALID, "the invoice has expired")
	}
	refund, won, err := s.store.ClaimRefund(ctx, jobID, timmy.RefundClaim{
		PaymentRequest: paymentRequest, PaymentHash: hash, AmountSats: decoded.AmountSats, At: s.now(),
	})
	if err != nil {
		return nil, err
	}
	if !won {
		if refund != nil && refund.PaymentHash == hash && refund.State != timmy.RefundOwed {
			return refund, nil // a concurrent identical claim won
		}
		return nil, timmy.Errorf(timmy.ECONFLICT, "the refund changed while claiming it; read the job and try again")
	}
	s.log.Info("refund claimed", "job", jobID, "sats", decoded.AmountSats, "hash", hash)

	// The payment must not be abandoned if the buyer disconnects.
	payCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refundPayTimeout)
	defer cancel()
	start := time.Now()
	payment, err := s.payer.PayInvoice(payCtx, paymentRequest, decoded.AmountSats)
	s.metrics.Observe(s.cfg.LightningName, "pay_invoice", start, err)
	switch {
	case err != nil && timmy.ErrorCode(err) == timmy.EINVALID:
		// The backend refused the invoice outright: nothing was sent.
		s.finishRefund(payCtx, jobID, hash, false, timmy.ErrorMessage(err))
	case err != nil:
		// Unknown outcome: leave it pending for the reconcile to track.
		s.log.Warn("refund payment outcome unknown; tracking it", "job", jobID, "err", err)
	default:
		s.applyPayment(payCtx, jobID, hash, payment)
	}
	job, err = s.store.GetJob(ctx, jobID)
	if err != nil {
		return nil, err
	}
	return job.Refund, nil
}

func (s *Service) applyPayment(ctx context.Context, jobID, hash string, p timmy.Payment) {
	switch p.State {
	case timmy.PaymentSucceeded:
		s.finishRefund(ctx, jobID, hash, true, "")
	case timmy.PaymentFailed:
		s.finishRefund(ctx, jobID, hash, false, p.FailureReason)
	}
}

func (s *Service) finishRefund(ctx context.Context, jobID, hash string, ok bool, reason string) {
	won, err := s.store.FinishRefund(ctx, jobID, hash, ok, reason, s.now())
	if err != nil {
		s.log.Error("record refund outcome", "job", jobID, "err", err)
		return
	}
	if won {
		s.log.Info("refund payment finished", "job", jobID, "paid", ok, "reason", reason)
	}
}

// reconcileRefunds tracks refund payments in flight to their end. A payment
// the backend has never heard of (the process died between recording the
// claim and sending it) is sent again: backends refuse to pay one payment
// hash twice, so this cannot pay twice.
func (s *Service) reconcileRefunds(ctx context.Context) {
	if s.payer == nil {
		return
	}
	jobs, err := s.store.ListPendingRefunds(ctx, reconcileBatch)
	if err != nil {
		s.log.Error("list pending refunds", "err", err)
		return
	}
	for _, job := range jobs {
		r := job.Refund
		hash, err := timmy.ParsePaymentHash(r.PaymentHash)
		if err != nil {
			continue
		}
		p, err := s.payer.LookupPayment(ctx, hash)
		if timmy.ErrorCode(err) == timmy.ENOTFOUND {
			if s.now().Sub(job.UpdatedAt) < refundPayTimeout+time.Minute {
				continue // the claim's own payment attempt may still be in flight
			}
			p, err = s.payer.PayInvoice(ctx, r.PaymentRequest, r.AmountSats)
			if timmy.ErrorCode(err) == timmy.EINVALID {
				// Refused before anything was sent (the buyer's invoice
				// expired, say): the refund is owed again, to a new claim.
				s.finishRefund(ctx, job.ID.String(), r.PaymentHash, false, timmy.ErrorMessage(err))
				continue
			}
		}
		if err != nil {
			s.log.Warn("track refund payment", "job", job.ID, "err", err)
			continue
		}
		s.applyPayment(ctx, job.ID.String(), r.PaymentHash, p)
	}
}
