// Package jobs runs Timmy's payment-gated jobs: it creates them, and it moves
// them forward in the background. A settlement watcher notices paid invoices
// (pushed by the backend where it can, and by a periodic reconcile of every
// open invoice), and a runner claims paid jobs with a lease in the database
// and runs the agent. HTTP reads never advance a job.
//
// Every state change is a conditional update; only the process that wins it
// performs the side effect that follows. The buyer's money goes where the
// job's outcome says (timmy.DecideInvoice): a hold invoice is settled once its
// work is stored and cancelled otherwise; on backends without holds a paid fee
// for undelivered work becomes a refund the buyer can claim.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/metrics"
)

// Config tunes the job service. Zero fields take the documented defaults.
type Config struct {
	// EvalFee is the fixed price of an evaluation (EVAL_FEE_SATS, default 10).
	EvalFee timmy.Sats
	// InvoiceExpiry is how long eval and work invoices, and so quotes, stay
	// payable (INVOICE_EXPIRY, default 15m).
	InvoiceExpiry time.Duration
	// MaxRequestChars bounds a request's length in characters
	// (MAX_REQUEST_CHARS, default 8000).
	MaxRequestChars int
	// LeaseDuration is how long a claimed job stays claimed without a
	// heartbeat; a crashed worker's job is picked up after it
	// (JOB_LEASE_DURATION, default 30s).
	LeaseDuration time.Duration
	// ReconcileInterval is how often every open invoice is checked with the
	// backend (RECONCILE_INTERVAL, default 2s).
	ReconcileInterval time.Duration
	// LatePaymentWindow is how long after its expiry a plain (non-hold)
	// invoice is still watched, so a payment that lands after the job
	// expired is found and refunded (LATE_PAYMENT_WINDOW, default 1h).
	LatePaymentWindow time.Duration
	// ClaimInterval is how often the runner looks for paid jobs when nothing
	// woke it (default 500ms).
	ClaimInterval time.Duration
	// MaxConcurrentJobs bounds agent calls in flight in this process
	// (MAX_CONCURRENT_JOBS, default 4).
	MaxConcurrentJobs int
	// Owner names this process in leases. Default host-pid-random.
	Owner string
	// LightningName and AgentName label metrics.
	LightningName, AgentName string
}

func (c *Config) setDefaults() {
	if c.EvalFee <= 0 {
		c.EvalFee = 10
	}
	if c.InvoiceExpiry <= 0 {
		c.InvoiceExpiry = 15 * time.Minute
	}
	if c.MaxRequestChars <= 0 {
		c.MaxRequestChars = 8000
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 30 * time.Second
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 2 * time.Second
	}
	if c.LatePaymentWindow <= 0 {
		c.LatePaymentWindow = time.Hour
	}
	if c.ClaimInterval <= 0 {
		c.ClaimInterval = 500 * time.Millisecond
	}
	if c.MaxConcurrentJobs <= 0 {
		c.MaxConcurrentJobs = 4
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.LightningName == "" {
		c.LightningName = "lightning"
	}
	if c.AgentName == "" {
		c.AgentName = "agent"
	}
}

// Service creates and runs jobs.
type Service struct {
	store   timmy.JobStore
	ln      timmy.Lightning
	hold    timmy.HoldInvoices // nil when the backend cannot hold
	payer   timmy.Payer        // nil when the backend cannot pay refunds
	agent   timmy.Agent
	pricer  timmy.Pricer
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Metrics
	clock   atomic.Pointer[func() time.Time]

	wakeRunner   chan struct{}
	invoiceHints chan timmy.PaymentHash
	reconcileNow chan struct{}
}

// New returns a job service. The backend's optional abilities (hold
// invoices, refunds) are discovered here.
func New(store timmy.JobStore, ln timmy.Lightning, agent timmy.Agent, pricer timmy.Pricer, cfg Config, log *slog.Logger, m *metrics.Metrics) *Service {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store: store, ln: ln, agent: agent, pricer: pricer, cfg: cfg, log: log, metrics: m,
		wakeRunner:   make(chan struct{}, 1),
		invoiceHints: make(chan timmy.PaymentHash, 256),
		reconcileNow: make(chan struct{}, 1),
	}
	s.hold, _ = ln.(timmy.HoldInvoices)
	s.payer, _ = ln.(timmy.Payer)
	if ps, ok := ln.(timmy.PayerStatus); ok && !ps.CanPay() {
		s.payer = nil
	}
	return s
}

// Config returns the effective configuration, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// SetClock replaces the clock, for tests of expiry.
func (s *Service) SetClock(now func() time.Time) { s.clock.Store(&now) }

// now reads the clock: the wall clock unless a test replaced it.
func (s *Service) now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// ValidateRequest checks a buyer's request text; the demo uses it too.
func (s *Service) ValidateRequest(request string) error {
	if strings.TrimSpace(request) == "" {
		return timmy.Errorf(timmy.EINVALID, "request must not be empty")
	}
	if !utf8.ValidString(request) {
		return timmy.Errorf(timmy.EINVALID, "request must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(request); n > s.cfg.MaxRequestChars {
		return timmy.Errorf(timmy.EINVALID, "request is %d characters; the limit is %d", n, s.cfg.MaxRequestChars)
	}
	return nil
}

// CreateJob validates the request, issues the eval invoice and stores the
// job.
func (s *Service) CreateJob(ctx context.Context, request string) (*timmy.Job, error) {
	if err := s.ValidateRequest(request); err != nil {
		return nil, err
	}
	id := uuid.New()
	inv, err := s.issueInvoice(ctx, id.String(), timmy.InvoiceEval, s.cfg.EvalFee)
	if err != nil {
		return nil, err
	}
	now := s.now()
	job := &timmy.Job{ID: id, Request: request, State: timmy.JobAwaitingEvalPayment, EvalInvoice: inv, CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateJob(ctx, job, inv); err != nil {
		return nil, err
	}
	s.log.Info("job created", "job", id, "eval_sats", inv.AmountSats)
	return job, nil
}

// GetJob reads a job. It never advances it.
func (s *Service) GetJob(ctx context.Context, id string) (*timmy.Job, error) {
	return s.store.GetJob(ctx, id)
}

// issueInvoice creates an invoice for a job: a hold invoice when the backend
// can hold, so the fee is only taken once it is earned.
func (s *Service) issueInvoice(ctx context.Context, jobID string, kind timmy.InvoiceKind, amount timmy.Sats) (*timmy.Invoice, error) {
	req := timmy.InvoiceRequest{AmountSats: amount, Memo: fmt.Sprintf("Timmy %s fee for job %s", kind, jobID), Expiry: s.cfg.InvoiceExpiry}
	start := time.Now()
	var (
		issued timmy.NewInvoice
		err    error
	)
	if s.hold != nil {
		var preimage timmy.Preimage
		if preimage, err = timmy.NewPreimage(); err == nil {
			issued, err = s.hold.CreateHoldInvoice(ctx, req, preimage)
			issued.Preimage = &preimage
		}
	} else {
		issued, err = s.ln.CreateInvoice(ctx, req)
	}
	s.metrics.Observe(s.cfg.LightningName, "create_invoice", start, err)
	if err != nil {
		return nil, backendError(fmt.Sprintf("create %s invoice", kind), err)
	}
	preimage := issued.Preimage
	if s.hold == nil {
		preimage = nil // only hold invoices need the service to keep it
	}
	return &timmy.Invoice{
		PaymentHash: issued.PaymentHash, JobID: jobID, Kind: kind, PaymentRequest: issued.PaymentRequest,
		AmountSats: issued.AmountSats, Status: timmy.InvoiceOpen, Hold: s.hold != nil, Preimage: preimage,
		ExpiresAt: issued.ExpiresAt, CreatedAt: s.now(),
	}, nil
}

// backendError keeps coded errors from a backend, whose messages the
// adapters write for buyers (an invalid amount, LNbits' own complaint), and
// marks everything else as the backend being unavailable, so the buyer gets
// a 502 with a useful message rather than a bare 500. The raw error (hosts,
// dial errors) stays in the chain for the log, never in the message.
func backendError(what string, err error) error {
	if timmy.ErrorCode(err) != timmy.EINTERNAL {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, &timmy.Error{Code: timmy.EUNAVAILABLE, Message: what + ": the Lightning backend is unavailable"}, err)
}

// publicMessage is what a buyer may read about err in a job's
// errorMessage: a coded error's own message, or a generic one for anything
// else, whose details are logged instead.
func (s *Service) publicMessage(jobID string, err error) string {
	if timmy.ErrorCode(err) != timmy.EINTERNAL {
		return timmy.ErrorMessage(err)
	}
	s.log.Error("job step failed", "job", jobID, "err", err)
	return "an internal error; the operator has the details"
}
