package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
)

// Config is the service's own configuration. Backend settings (Lightning,
// agent, pricing) are read by their own loaders from the same environment.
// Every field's default is the one named here and in the README.
type Config struct {
	Env             string        // TIMMY_ENV: development (default) or production
	Port            int64         // PORT: 8080
	DataDir         string        // TIMMY_DATA_DIR: ./data (SQLite file, stub node key)
	DatabaseURL     string        // DATABASE_URL: empty means SQLite in DataDir
	LogLevel        slog.Level    // LOG_LEVEL: info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: 15s

	EvalFee           timmy.Sats    // EVAL_FEE_SATS: 10
	InvoiceExpiry     time.Duration // INVOICE_EXPIRY: 15m
	MaxRequestChars   int64         // MAX_REQUEST_CHARS: 8000
	LeaseDuration     time.Duration // JOB_LEASE_DURATION: 30s
	ReconcileInterval time.Duration // RECONCILE_INTERVAL: 2s
	MaxConcurrentJobs int64         // MAX_CONCURRENT_JOBS: 4
	LatePaymentWindow time.Duration // LATE_PAYMENT_WINDOW: 1h

	DemoRateLimit       int64          // DEMO_RATE_LIMIT: 5 per hour per IP
	DemoMaxOutputTokens int64          // DEMO_MAX_OUTPUT_TOKENS: 0 (the agent's cap)
	TrustedProxies      []netip.Prefix // TRUSTED_PROXIES: none

	AllowStubLightning bool // ALLOW_STUB_LIGHTNING: false

	StubAgentDelay   time.Duration // STUB_AGENT_DELAY: 0
	StubRejectMarker string        // STUB_REJECT_MARKER: [reject]
	StubFailMarker   string        // STUB_FAIL_MARKER: [fail]
}

// Production reports whether TIMMY_ENV is production.
func (c Config) Production() bool { return c.Env == "production" }

// SQLitePath is where the embedded database lives.
func (c Config) SQLitePath() string { return filepath.Join(c.DataDir, "timmy.db") }

// StubKeyPath is where the stub Lightning node keeps its key.
func (c Config) StubKeyPath() string { return filepath.Join(c.DataDir, "stub-node.key") }

// loadConfig reads the service's configuration, collecting every error.
func loadConfig(e *env.Reader) (Config, error) {
	c := Config{
		Env:                 strings.ToLower(e.String("TIMMY_ENV", "development")),
		Port:                e.Int("PORT", 8080),
		DataDir:             e.String("TIMMY_DATA_DIR", "./data"),
		DatabaseURL:         e.Secret("DATABASE_URL"),
		ShutdownTimeout:     e.Duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		EvalFee:             timmy.Sats(e.Int("EVAL_FEE_SATS", 10)),
		InvoiceExpiry:       e.Duration("INVOICE_EXPIRY", 15*time.Minute),
		MaxRequestChars:     e.Int("MAX_REQUEST_CHARS", 8000),
		LeaseDuration:       e.Duration("JOB_LEASE_DURATION", 30*time.Second),
		ReconcileInterval:   e.Duration("RECONCILE_INTERVAL", 2*time.Second),
		MaxConcurrentJobs:   e.Int("MAX_CONCURRENT_JOBS", 4),
		LatePaymentWindow:   e.Duration("LATE_PAYMENT_WINDOW", time.Hour),
		DemoRateLimit:       e.Int("DEMO_RATE_LIMIT", 5),
		DemoMaxOutputTokens: e.Int("DEMO_MAX_OUTPUT_TOKENS", 0),
		AllowStubLightning:  e.Bool("ALLOW_STUB_LIGHTNING", false),
		StubAgentDelay:      e.Duration("STUB_AGENT_DELAY", 0),
		StubRejectMarker:    e.String("STUB_REJECT_MARKER", "[reject]"),
		StubFailMarker:      e.String("STUB_FAIL_MARKER", "[fail]"),
	}
	if c.Env != "development" && c.Env != "production" {
		e.Fail("TIMMY_ENV: %q must be development or production", c.Env)
	}
	if err := c.LogLevel.UnmarshalText([]byte(e.String("LOG_LEVEL", "info"))); err != nil {
		e.Fail("LOG_LEVEL: %v", err)
	}
	if c.Port <= 0 || c.Port > 65535 {
		e.Fail("PORT: %d is not a port", c.Port)
	}
	if c.EvalFee <= 0 {
		e.Fail("EVAL_FEE_SATS: must be at least 1")
	}
	if c.InvoiceExpiry < 10*time.Second {
		e.Fail("INVOICE_EXPIRY: %s is too short to pay in", c.InvoiceExpiry)
	}
	if c.MaxRequestChars <= 0 {
		e.Fail("MAX_REQUEST_CHARS: must be positive")
	}
	if c.LeaseDuration < time.Second {
		e.Fail("JOB_LEASE_DURATION: must be at least 1s")
	}
	if c.ReconcileInterval <= 0 {
		e.Fail("RECONCILE_INTERVAL: must be positive")
	}
	if c.MaxConcurrentJobs <= 0 {
		e.Fail("MAX_CONCURRENT_JOBS: must be positive")
	}
	if c.DemoRateLimit <= 0 {
		e.Fail("DEMO_RATE_LIMIT: must be positive")
	}
	for _, item := range e.List("TRUSTED_PROXIES", nil) {
		p, err := parsePrefix(item)
		if err != nil {
			e.Fail("TRUSTED_PROXIES: %q is not an IP or CIDR", item)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, p)
	}
	return c, e.Err()
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkProduction refuses configurations that would lose real money or lie
// to buyers in production.
func checkProduction(c Config, lightningName string) error {
	if !c.Production() {
		return nil
	}
	if lightningName == "stub" && !c.AllowStubLightning {
		return fmt.Errorf("refusing to start: TIMMY_ENV=production with the stub Lightning backend takes no real payments; " +
			"set LNBITS_URL or LND_REST_URL, or ALLOW_STUB_LIGHTNING=true for a demo deployment")
	}
	return nil
}

// newLogger returns a text logger in development and a JSON one in
// production, where logs go to a collector.
func newLogger(c Config, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.Production() {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
