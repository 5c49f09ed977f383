package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/timmyhq/timmy"
)

// reconcileBatch bounds how many invoices one reconcile pass reads at once.
const reconcileBatch = 500

// expiryGrace is how long past its expiry an invoice the backend still calls
// open is given before the service treats it as expired, to absorb clock skew
// between the service and the node.
const expiryGrace = 5 * time.Second

// HintInvoice asks the watcher to look at one invoice soon. Backend pushes
// and the development pay route call it; it never blocks.
func (s *Service) HintInvoice(hash timmy.PaymentHash) {
	select {
	case s.invoiceHints <- hash:
	default:
		// The queue is full; the periodic reconcile will get there.
		s.ReconcileSoon()
	}
}

// ReconcileSoon asks the watcher for a full reconcile pass now.
func (s *Service) ReconcileSoon() {
	select {
	case s.reconcileNow <- struct{}{}:
	default:
	}
}

// watchSettlements reconciles every unresolved invoice on start, on every
// tick, after each (re)connection of the backend's push channel, and looks
// at single invoices when hinted.
func (s *Service) watchSettlements(ctx context.Context) {
	if n, ok := s.ln.(timmy.InvoiceNotifier); ok {
		go s.listenForPushes(ctx, n)
	}
	tick := time.NewTicker(s.cfg.ReconcileInterval)
	defer tick.Stop()
	s.Reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.Reconcile(ctx)
		case <-s.reconcileNow:
			s.Reconcile(ctx)
		case hash := <-s.invoiceHints:
			s.reconcileOne(ctx, hash)
		}
	}
}

// listenForPushes keeps the backend's push channel open, reconnecting with
// backoff, and asks for a full reconcile after every reconnect because
// pushes sent while disconnected are lost.
func (s *Service) listenForPushes(ctx context.Context, n timmy.InvoiceNotifier) {
	backoff := time.Second
	for ctx.Err() == nil {
		connected := time.Now()
		err := n.NotifyInvoices(ctx, s.HintInvoice)
		if ctx.Err() != nil {
			return
		}
		if time.Since(connected) > time.Minute {
			backoff = time.Second
		}
		s.log.Warn("invoice push channel closed; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
		s.ReconcileSoon()
	}
}

// Reconcile checks every unresolved invoice once. It is safe to run in many
// processes at once: every change it makes is conditional.
func (s *Service) Reconcile(ctx context.Context) {
	var after *timmy.Invoice
	for {
		invoices, err := s.store.ListUnresolvedInvoices(ctx, after, reconcileBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("list unresolved invoices", "err", err)
			}
			return
		}
		for _, inv := range invoices {
			if ctx.Err() != nil {
				return
			}
			if err := s.reconcileInvoice(ctx, inv); err != nil && ctx.Err() == nil {
				s.log.Error("reconcile invoice", "hash", inv.PaymentHash, "job", inv.JobID, "err", err)
			}
		}
		if len(invoices) < reconcileBatch {
			break
		}
		after = invoices[len(invoices)-1]
	}
	s.reconcileRefunds(ctx)
}

func (s *Service) reconcileOne(ctx context.Context, hash timmy.PaymentHash) {
	inv, err := s.store.GetInvoice(ctx, hash)
	if timmy.ErrorCode(err) == timmy.ENOTFOUND {
		return // not one of our job invoices
	}
	if err != nil {
		s.log.Error("get hinted invoice", "hash", hash, "err", err)
		return
	}
	if inv.Resolved {
		return
	}
	if err := s.reconcileInvoice(ctx, inv); err != nil && ctx.Err() == nil {
		s.log.Error("reconcile invoice", "hash", hash, "job", inv.JobID, "err", err)
	}
}

// reconcileInvoice brings one invoice's stored status up to date with the
// backend, moves its job forward if it was just paid, and sends its money
// where the job's outcome says.
func (s *Service) reconcileInvoice(ctx context.Context, inv *timmy.Invoice) error {
	if inv.Status == timmy.InvoiceOpen || inv.Status == timmy.InvoiceAccepted || s.watchingForLatePayment(inv) {
		start := time.Now()
		status, err := s.ln.LookupInvoice(ctx, inv.PaymentHash)
		s.metrics.Observe(s.cfg.LightningName, "lookup_invoice", start, err)
		if err != nil {
			return fmt.Errorf("lookup invoice: %w", err)
		}
		if status == timmy.InvoiceOpen && s.now().After(inv.ExpiresAt.Add(expiryGrace)) {
			status = timmy.InvoiceExpired
		}
		if status != inv.Status {
			if err := s.applyInvoiceStatus(ctx, inv, status); err != nil {
				return err
			}
		}
	}
	return s.resolve(ctx, inv)
}

// applyInvoiceStatus records a status the backend reported and makes the
// job transition it implies.
func (s *Service) applyInvoiceStatus(ctx context.Context, inv *timmy.Invoice, status timmy.InvoiceStatus) error {
	now := s.now()
	from := []timmy.InvoiceStatus{inv.Status}
	if _, err := s.store.UpdateInvoiceStatus(ctx, inv.PaymentHash, from, status, now); err != nil {
		return err
	}
	prev := inv.Status
	inv.Status = status
	waiting, working := timmy.JobAwaitingEvalPayment, timmy.JobEvaluating
	if inv.Kind == timmy.InvoiceWork {
		waiting, working = timmy.JobAwaitingWorkPayment, timmy.JobExecuting
	}
	switch {
	case status.Paid() && !prev.Paid():
		won, err := s.store.TransitionJob(ctx, timmy.Transition{JobID: inv.JobID, From: waiting, To: working, At: now})
		if err != nil {
			return err
		}
		if won {
			s.log.Info("payment received", "job", inv.JobID, "invoice", inv.Kind, "sats", inv.AmountSats, "status", status)
			s.wake()
		} else {
			s.log.Warn("payment arrived for a job that moved on; its money follows the job's outcome", "job", inv.JobID, "invoice", inv.Kind)
		}
	case status == timmy.InvoiceExpired || status == timmy.InvoiceCancelled:
		msg := fmt.Sprintf("the %s invoice expired unpaid", inv.Kind)
		won, err := s.store.TransitionJob(ctx, timmy.Transition{JobID: inv.JobID, From: waiting, To: timmy.JobExpired, At: now, ErrorMessage: &msg})
		if err != nil {
			return err
		}
		if won {
			s.log.Info("job expired", "job", inv.JobID, "invoice", inv.Kind)
		}
	}
	return nil
}

// resolve sends a paid invoice's money where its job's outcome says, once:
// settle or cancel a hold invoice, or record a refund for a settled one.
func (s *Service) resolve(ctx context.Context, inv *timmy.Invoice) error {
	job, err := s.store.GetJob(ctx, inv.JobID)
	if err != nil {
		return err
	}
	action := timmy.DecideInvoice(job, inv.Kind)
	unpaid := !inv.Status.Paid()
	if unpaid {
		// An unpaid invoice is finished with once its job no longer waits
		// for it; a hold invoice is cancelled so a late payment cannot land.
		if !job.State.Final() && inv.Status == timmy.InvoiceOpen {
			return nil
		}
		if inv.Hold && (inv.Status == timmy.InvoiceOpen || inv.Status == timmy.InvoiceExpired) {
			// Cancel at the node too, rather than trust it to expire the
			// invoice itself: a held payment must never land on a job
			// that has moved on.
			if err := s.cancelHold(ctx, inv); err != nil {
				return err
			}
			final := timmy.InvoiceCancelled
			if inv.Status == timmy.InvoiceExpired {
				final = timmy.InvoiceExpired
			}
			_, err := s.store.ResolveInvoice(ctx, inv.PaymentHash, final)
			return err
		}
		if s.watchingForLatePayment(inv) {
			return nil
		}
		_, err := s.store.ResolveInvoice(ctx, inv.PaymentHash, inv.Status)
		return err
	}
	switch action {
	case timmy.ActionWait:
		return nil
	case timmy.ActionKeep:
		if inv.Hold && inv.Status == timmy.InvoiceAccepted {
			if inv.Preimage == nil {
				return fmt.Errorf("hold invoice %s has no stored preimage", inv.PaymentHash)
			}
			start := time.Now()
			err := s.hold.SettleHoldInvoice(ctx, *inv.Preimage)
			s.metrics.Observe(s.cfg.LightningName, "settle_invoice", start, err)
			if err != nil {
				return fmt.Errorf("settle hold invoice: %w", err)
			}
		}
		won, err := s.store.ResolveInvoice(ctx, inv.PaymentHash, timmy.InvoiceSettled)
		if won {
			s.log.Info("fee taken", "job", inv.JobID, "invoice", inv.Kind, "sats", inv.AmountSats)
		}
		return err
	case timmy.ActionReturn:
		if inv.Hold && inv.Status == timmy.InvoiceAccepted {
			if err := s.cancelHold(ctx, inv); err != nil {
				return err
			}
			won, err := s.store.ResolveInvoice(ctx, inv.PaymentHash, timmy.InvoiceCancelled)
			if won {
				s.log.Info("held payment returned to buyer", "job", inv.JobID, "invoice", inv.Kind, "sats", inv.AmountSats)
			}
			return err
		}
		won, err := s.store.ResolveInvoiceAsRefund(ctx, inv.PaymentHash, s.now())
		if won {
			s.log.Info("refund owed to buyer", "job", inv.JobID, "invoice", inv.Kind, "sats", inv.AmountSats)
		}
		return err
	}
	return nil
}

func (s *Service) cancelHold(ctx context.Context, inv *timmy.Invoice) error {
	if s.hold == nil {
		return errors.New("hold invoice on a backend without hold invoices")
	}
	start := time.Now()
	err := s.hold.CancelHoldInvoice(ctx, inv.PaymentHash)
	s.metrics.Observe(s.cfg.LightningName, "cancel_invoice", start, err)
	if err != nil {
		return fmt.Errorf("cancel hold invoice: %w", err)
	}
	return nil
}

// watchingForLatePayment reports whether an expired plain invoice is still
// checked with the backend. A hold invoice is cancelled at the node, so it
// can never be paid late; a plain one is watched for LatePaymentWindow after
// its expiry, and a payment that lands anyway becomes a refund.
func (s *Service) watchingForLatePayment(inv *timmy.Invoice) bool {
	return !inv.Hold && inv.Status == timmy.InvoiceExpired && s.now().Before(inv.ExpiresAt.Add(s.cfg.LatePaymentWindow))
}

// resolveJobInvoices resolves a job's paid invoices right after the job
// changed state, so money moves without waiting for the next reconcile.
func (s *Service) resolveJobInvoices(ctx context.Context, jobID string) {
	job, err := s.store.GetJob(ctx, jobID)
	if err != nil {
		s.log.Error("reload job", "job", jobID, "err", err)
		return
	}
	for _, inv := range []*timmy.Invoice{job.EvalInvoice, job.WorkInvoice} {
		if inv == nil || inv.Resolved {
			continue
		}
		if err := s.resolve(ctx, inv); err != nil {
			s.log.Error("resolve invoice; the reconcile will retry", "job", jobID, "invoice", inv.Kind, "err", err)
		}
	}
}
