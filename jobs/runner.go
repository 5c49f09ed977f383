package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/timmyhq/timmy"
)

// Run runs the settlement watcher and the job runner until ctx ends, then
// waits for jobs in flight to stop. A job cut off by shutdown keeps its lease
// until it lapses, and then another process (or this one, restarted) runs it
// again.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.watchSettlements(ctx) }()
	go func() { defer wg.Done(); s.runJobs(ctx) }()
	wg.Wait()
}

// wake tells the runner a job may be ready, without blocking.
func (s *Service) wake() {
	select {
	case s.wakeRunner <- struct{}{}:
	default:
	}
}

// runJobs claims paid jobs and runs them, at most MaxConcurrentJobs at once.
func (s *Service) runJobs(ctx context.Context) {
	slots := make(chan struct{}, s.cfg.MaxConcurrentJobs)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(s.cfg.ClaimInterval)
	defer tick.Stop()
	for {
		// Claim as many jobs as there are free slots.
	claim:
		for {
			select {
			case slots <- struct{}{}:
			default:
				break claim
			}
			now := s.now()
			job, err := s.store.ClaimJob(ctx, s.cfg.Owner, now, now.Add(s.cfg.LeaseDuration))
			if err != nil || job == nil {
				<-slots
				if err != nil && ctx.Err() == nil {
					s.log.Error("claim job", "err", err)
				}
				break claim
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				s.work(ctx, job)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.wakeRunner:
		}
	}
}

// work runs one claimed job while a heartbeat keeps its lease. Losing the
// lease cancels the agent call, because another process now owns the job.
func (s *Service) work(ctx context.Context, job *timmy.Job) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.heartbeat(ctx, cancel, job.ID.String())

	log := s.log.With("job", job.ID, "state", job.State)
	log.Info("job claimed", "owner", s.cfg.Owner)
	switch job.State {
	case timmy.JobEvaluating:
		s.evaluate(ctx, job)
	case timmy.JobExecuting:
		s.execute(ctx, job)
	}
	if ctx.Err() == nil {
		s.resolveJobInvoices(ctx, job.ID.String())
	}
}

// heartbeat extends the job's lease every third of its duration. When the
// lease cannot be extended in time (the database is unreachable, say), the
// work is stopped before the lease lapses, so that a worker that claims the
// job afterwards never runs alongside this one.
func (s *Service) heartbeat(ctx context.Context, lost context.CancelFunc, jobID string) {
	tick := time.NewTicker(s.cfg.LeaseDuration / 3)
	defer tick.Stop()
	held := s.now().Add(s.cfg.LeaseDuration) // the lease ClaimJob took
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			until := s.now().Add(s.cfg.LeaseDuration)
			ok, err := s.store.ExtendLease(ctx, jobID, s.cfg.Owner, until)
			if err != nil {
				if !s.now().Add(s.cfg.LeaseDuration / 3).Before(held) {
					s.log.Warn("lease about to lapse and cannot be extended; stopping work", "job", jobID, "err", err)
					lost()
					return
				}
				s.log.Warn("extend lease", "job", jobID, "err", err)
				continue
			}
			held = until
			if !ok {
				s.log.Warn("lease lost; stopping work", "job", jobID)
				lost()
				return
			}
		}
	}
}

// evaluate asks the agent whether to take the request and, if it does,
// quotes the work and issues the work invoice.
func (s *Service) evaluate(ctx context.Context, job *timmy.Job) {
	id := job.ID.String()
	start := time.Now()
	ev, err := s.agent.Evaluate(ctx, job.Request)
	s.metrics.Observe(s.cfg.AgentName, "evaluate", start, err)
	if err != nil {
		s.fail(ctx, job, "evaluation failed: "+s.publicMessage(job.ID.String(), err))
		return
	}
	now := s.now()
	if !ev.Accepted {
		s.transition(ctx, timmy.Transition{JobID: id, From: timmy.JobEvaluating, To: timmy.JobRejected, Owner: s.cfg.Owner, At: now,
			Reason: &ev.Reason, EvalModel: &ev.Usage.Model, EvaluatedAt: &now})
		return
	}
	start = time.Now()
	quote, err := s.pricer.QuoteWork(ctx, job.Request, s.agent.WorkModel())
	s.metrics.Observe("pricing", "quote", start, err)
	if err != nil {
		s.fail(ctx, job, "pricing failed: "+s.publicMessage(id, err))
		return
	}
	inv, err := s.issueInvoice(ctx, id, timmy.InvoiceWork, quote.AmountSats)
	if err != nil {
		s.fail(ctx, job, "could not issue the work invoice: "+s.publicMessage(id, err))
		return
	}
	won := s.transition(ctx, timmy.Transition{JobID: id, From: timmy.JobEvaluating, To: timmy.JobAwaitingWorkPayment, Owner: s.cfg.Owner, At: now,
		Reason: &ev.Reason, EvalModel: &ev.Usage.Model, EvaluatedAt: &now, Quote: &quote, WorkInvoice: inv})
	if !won && inv.Hold {
		// Another process owns the job now; this invoice must never be paid.
		_ = s.cancelHold(context.WithoutCancel(ctx), inv)
	}
}

// execute runs the paid work and stores the result with its cost ledger.
func (s *Service) execute(ctx context.Context, job *timmy.Job) {
	start := time.Now()
	res, err := s.agent.Execute(ctx, job.Request, timmy.ExecuteOptions{})
	s.metrics.Observe(s.cfg.AgentName, "execute", start, err)
	if err != nil {
		s.fail(ctx, job, "work failed: "+s.publicMessage(job.ID.String(), err))
		return
	}
	ledger := timmy.CostLedger{
		Model:              res.Usage.Model,
		ActualInputTokens:  res.Usage.InputTokens,
		ActualOutputTokens: res.Usage.OutputTokens,
		ActualCostUSD:      s.pricer.ActualCostUSD(res.Usage),
		TokensEstimated:    res.Usage.Estimated,
	}
	if job.WorkInvoice != nil {
		ledger.ChargedSats = job.WorkInvoice.AmountSats
	}
	if job.Quote != nil {
		ledger.BTCPriceUSD = job.Quote.BTCPriceUSD
	}
	s.transition(ctx, timmy.Transition{JobID: job.ID.String(), From: timmy.JobExecuting, To: timmy.JobComplete, Owner: s.cfg.Owner, At: s.now(),
		Result: &res.Text, Ledger: &ledger})
}

// fail moves a job this process holds to failed. A job whose lease was lost
// is left to its new owner.
func (s *Service) fail(ctx context.Context, job *timmy.Job, msg string) {
	if ctx.Err() != nil {
		s.log.Warn("job interrupted; it will be retried after its lease lapses", "job", job.ID, "err", msg)
		return
	}
	s.transition(ctx, timmy.Transition{JobID: job.ID.String(), From: job.State, To: timmy.JobFailed, Owner: s.cfg.Owner, At: s.now(), ErrorMessage: &msg})
}

func (s *Service) transition(ctx context.Context, t timmy.Transition) bool {
	won, err := s.store.TransitionJob(ctx, t)
	if err != nil {
		s.log.Error("transition job", "job", t.JobID, "from", t.From, "to", t.To, "err", err)
		return false
	}
	if won {
		s.log.Info("job moved", "job", t.JobID, "from", t.From, "to", t.To)
	} else {
		s.log.Warn("job transition lost; another process owns the job", "job", t.JobID, "from", t.From, "to", t.To)
	}
	return won
}
