package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// reconcileBatch bounds how many invoices one reconcile pass reads at once.
const reconcileBatch = 500

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
// backend, makes the job transition the stored status implies, and sends the
// money where the job's outcome says.
//
// The job transition follows the stored status on every pass, not only when
// the status changes: a process that died between recording a payment and
// moving its job leaves the next pass (in any replica) to finish the move.
func (s *Service) reconcileInvoice(ctx context.Context, inv *timmy.Invoice) error {
	if needsLookup(inv) {
		start := time.Now()
		status, err := s.ln.LookupInvoice(ctx, inv.PaymentHash)
		s.metrics.Observe(s.cfg.LightningName, "lookup_invoice", start, err)
		if err != nil {
			// Nothing is decided on a failed lookup; in particular an
			// expired invoice is not given up on.
			return fmt.Errorf("lookup invoice: %w", err)
		}
		if status == timmy.InvoiceOpen && lightning.Lapsed(inv.ExpiresAt, s.now()) {
			status = timmy.InvoiceExpired
		}
		if status != inv.Status {
			updated, err := s.store.UpdateInvoiceStatus(ctx, inv.PaymentHash, []timmy.InvoiceStatus{inv.Status}, status, s.now())
			if err != nil {
				return err
			}
			if !updated {
				// Another process changed it first; work from what it stored.
				if inv, err = s.store.GetInvoice(ctx, inv.PaymentHash); err != nil {
					return err
				}
			} else {
				inv.Status = status
			}
		}
	}
	job, err := s.store.GetJob(ctx, inv.JobID)
	if err != nil {
		return err
	}
	if job, err = s.advanceJob(ctx, job, inv); err != nil {
		return err
	}
	return s.resolve(ctx, job, inv, true)
}

// needsLookup reports whether the backend must be asked about an invoice:
// while it can still change (open, held), and for an expired plain invoice,
// which is watched for a late payment.
func needsLookup(inv *timmy.Invoice) bool {
	switch inv.Status {
	case timmy.InvoiceOpen, timmy.InvoiceAccepted:
		return true
	case timmy.InvoiceExpired:
		return !inv.Hold
	}
	return false
}

// advanceJob makes the transition an invoice's stored status implies for a
// job still waiting on that invoice: paid moves it to work, expired or
// cancelled ends it. It returns the job as it stands afterwards.
func (s *Service) advanceJob(ctx context.Context, job *timmy.Job, inv *timmy.Invoice) (*timmy.Job, error) {
	waiting, working := timmy.JobAwaitingEvalPayment, timmy.JobEvaluating
	if inv.Kind == timmy.InvoiceWork {
		waiting, working = timmy.JobAwaitingWorkPayment, timmy.JobExecuting
	}
	if job.State != waiting {
		return job, nil
	}
	now := s.now()
	t := timmy.Transition{JobID: inv.JobID, From: waiting, At: now}
	switch {
	case inv.Status.Paid():
		t.To = working
	case inv.Status == timmy.InvoiceExpired || inv.Status == timmy.InvoiceCancelled:
		msg := fmt.Sprintf("the %s invoice expired unpaid", inv.Kind)
		t.To, t.ErrorMessage = timmy.JobExpired, &msg
	default:
		return job, nil
	}
	won, err := s.store.TransitionJob(ctx, t)
	if err != nil {
		return nil, err
	}
	if won {
		if t.To == working {
			s.log.Info("payment received", "job", inv.JobID, "invoice", inv.Kind, "sats", inv.AmountSats, "status", inv.Status)
			s.wake()
		} else {
			s.log.Info("job expired", "job", inv.JobID, "invoice", inv.Kind)
		}
	}
	return s.store.GetJob(ctx, inv.JobID)
}

// resolve sends an invoice's money where its job's outcome says, once:
// settle or cancel a hold invoice, or record a refund for a settled one. An
// unpaid invoice is finished with only when confirmed says the backend was
// just asked about it.
func (s *Service) resolve(ctx context.Context, job *timmy.Job, inv *timmy.Invoice, confirmed bool) error {
	action := timmy.DecideInvoice(job, inv.Kind)
	unpaid := !inv.Status.Paid()
	if unpaid {
		// An unpaid invoice is finished with once its job no longer waits
		// for it; a hold invoice is cancelled so a late payment cannot land.
		if !confirmed || (!job.State.Final() && inv.Status == timmy.InvoiceOpen) {
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
// Unpaid invoices are left to the reconcile, which asks the backend first.
func (s *Service) resolveJobInvoices(ctx context.Context, jobID string) {
	job, err := s.store.GetJob(ctx, jobID)
	if err != nil {
		s.log.Error("reload job", "job", jobID, "err", err)
		return
	}
	for _, inv := range []*timmy.Invoice{job.EvalInvoice, job.WorkInvoice} {
		if inv == nil || inv.Resolved || !inv.Status.Paid() {
			continue
		}
		if err := s.resolve(ctx, job, inv, false); err != nil {
			s.log.Error("resolve invoice; the reconcile will retry", "job", jobID, "invoice", inv.Kind, "err", err)
		}
	}
}
