package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	stubagent "github.com/timmyhq/timmy/agent/stub"
	"github.com/timmyhq/timmy/demo"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/internal/metrics"
	"github.com/timmyhq/timmy/jobs"
	stubln "github.com/timmyhq/timmy/lightning/stub"
	"github.com/timmyhq/timmy/server"
	"github.com/timmyhq/timmy/store"
)

// Main is the running service: every part wired together, started by Run
// and stopped by Close.
type Main struct {
	Config Config
	Log    *slog.Logger

	db       *store.DB
	jobs     *jobs.Service
	http     *http.Server
	listener net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMain reads the configuration and wires the service, without starting
// anything.
func NewMain(ctx context.Context, e *env.Reader, logOut io.Writer) (*Main, error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg, logOut)
	m := &Main{Config: cfg, Log: log}

	db, dbName, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	m.db = db
	if err := db.Migrate(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}

	ln, lnName, err := loadLightning(e, db, log)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("lightning: %w", err)
	}
	var devPayer server.DevPayer
	if ln == nil {
		stub, err := stubln.New(db, cfg.StubKeyPath())
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("stub lightning: %w", err)
		}
		ln, lnName, devPayer = stub, "stub", stub
	}
	if err := checkProduction(cfg, lnName); err != nil {
		m.Close()
		return nil, err
	}

	agent, agentName, err := loadAgent(e, log)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	if agent == nil {
		agent = stubagent.New(stubagent.Config{RejectMarker: cfg.StubRejectMarker, FailMarker: cfg.StubFailMarker, Delay: cfg.StubAgentDelay})
		agentName = "stub"
	}
	pricer, err := loadPricer(e, log)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("pricing: %w", err)
	}
	if err := e.Err(); err != nil {
		m.Close()
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	if cfg.Production() && agentName == "stub" {
		log.Warn("production is running the stub agent: buyers get canned answers")
	}

	reg := metrics.New(db)
	m.jobs = jobs.New(db, ln, agent, pricer, jobs.Config{
		EvalFee: cfg.EvalFee, InvoiceExpiry: cfg.InvoiceExpiry, MaxRequestChars: int(cfg.MaxRequestChars),
		LeaseDuration: cfg.LeaseDuration, ReconcileInterval: cfg.ReconcileInterval, MaxConcurrentJobs: int(cfg.MaxConcurrentJobs),
		LatePaymentWindow: cfg.LatePaymentWindow,
		LightningName:     lnName, AgentName: agentName,
	}, log, reg)
	demoSvc := demo.New(db, agent, m.jobs.ValidateRequest, demo.Config{Limit: cfg.DemoRateLimit, MaxOutputTokens: cfg.DemoMaxOutputTokens}, reg, agentName)
	srv := server.New(server.Config{
		DevRoutes: !cfg.Production(), TrustedProxies: cfg.TrustedProxies,
		LightningName: lnName, AgentName: agentName, DatabaseName: dbName,
	}, m.jobs, demoSvc, devPayer, db, log, reg)
	m.http = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // the demo waits for the agent
		IdleTimeout:       2 * time.Minute,
	}
	log.Info("timmy configured", "env", cfg.Env, "database", dbName, "lightning", lnName, "agent", agentName,
		"work_model", agent.WorkModel(), "eval_fee_sats", cfg.EvalFee, "dev_routes", !cfg.Production() && devPayer != nil)
	return m, nil
}

func openStore(cfg Config) (*store.DB, string, error) {
	if cfg.DatabaseURL != "" {
		db, err := store.OpenPostgres(cfg.DatabaseURL)
		return db, "postgres", err
	}
	db, err := store.OpenSQLite(cfg.SQLitePath())
	return db, "sqlite", err
}

// Run listens on PORT and starts the background workers. It returns once
// the service is serving.
func (m *Main) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", m.Config.Port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	m.listener = ln
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(3)
	go func() { defer m.wg.Done(); m.jobs.Run(ctx) }()
	go func() { defer m.wg.Done(); m.pruneDemoUsage(ctx) }()
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error("http server stopped", "err", err)
		}
	}()
	m.Log.Info("serving", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the service listens on, once Run returned.
func (m *Main) Addr() string { return m.listener.Addr().String() }

// pruneDemoUsage deletes demo counters of windows long past, hourly.
func (m *Main) pruneDemoUsage(ctx context.Context) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if err := m.db.PruneDemoUsage(ctx, time.Now().Add(-2*demo.Window)); err != nil && ctx.Err() == nil {
			m.Log.Warn("prune demo usage", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Close stops accepting requests, lets requests in flight finish, stops the
// workers and closes the database. Jobs cut off keep their leases, which
// lapse so another process picks them up.
func (m *Main) Close() error {
	if m.http != nil && m.listener != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
		defer cancel()
		if err := m.http.Shutdown(ctx); err != nil {
			m.Log.Warn("http shutdown", "err", err)
		}
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.db != nil {
		return m.db.Close()
	}
	return nil
}

func serve(ctx context.Context, stderr io.Writer) error {
	m, err := NewMain(ctx, env.New(nil), stderr)
	if err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	<-ctx.Done()
	m.Log.Info("shutting down")
	return m.Close()
}

func migrate(ctx context.Context, stdout io.Writer) error {
	cfg, err := loadConfig(env.New(nil))
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	db, name, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "%s database is up to date\n", name)
	return nil
}
