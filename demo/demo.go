// Package demo is Timmy's free, rate-limited endpoint for people trying the
// service. The limit is counted per client IP in fixed hourly windows in the
// shared database, so it holds across restarts and replicas.
package demo

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/metrics"
)

// Window is the length of one rate-limit window.
const Window = time.Hour

// Config tunes the demo.
type Config struct {
	// Limit is the number of calls per client IP per hour (DEMO_RATE_LIMIT,
	// default 5).
	Limit int64
	// MaxOutputTokens caps the demo's answers (DEMO_MAX_OUTPUT_TOKENS,
	// default 0: the agent's own cap).
	MaxOutputTokens int64
}

// Service runs demo requests.
type Service struct {
	limiter  timmy.DemoLimiter
	agent    timmy.Agent
	validate func(string) error
	cfg      Config
	metrics  *metrics.Metrics
	now      func() time.Time
	name     string
}

// New returns a demo service. validate checks request texts the same way
// paid jobs do.
func New(limiter timmy.DemoLimiter, agent timmy.Agent, validate func(string) error, cfg Config, m *metrics.Metrics, agentName string) *Service {
	if cfg.Limit <= 0 {
		cfg.Limit = 5
	}
	return &Service{limiter: limiter, agent: agent, validate: validate, cfg: cfg, metrics: m, now: time.Now, name: agentName}
}

// LimitKey is what the limit is counted by: the IPv4 address, or the /64
// an IPv6 address is in, because one IPv6 subscriber holds a whole /64 and
// could otherwise take a fresh address for every call.
func LimitKey(client string) string {
	addr, err := netip.ParseAddr(client)
	if err != nil || !addr.Is6() || addr.Is4In6() {
		return client
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}

// Run counts the call against client's limit and, within it, runs the work
// model on request.
func (s *Service) Run(ctx context.Context, client, request string) (timmy.WorkResult, error) {
	if err := s.validate(request); err != nil {
		return timmy.WorkResult{}, err
	}
	now := s.now()
	window := now.Truncate(Window)
	calls, err := s.limiter.HitDemo(ctx, LimitKey(client), window)
	if err != nil {
		return timmy.WorkResult{}, err
	}
	if calls > s.cfg.Limit {
		wait := window.Add(Window).Sub(now)
		return timmy.WorkResult{}, &timmy.Error{
			Code:       timmy.ERATELIMIT,
			Message:    fmt.Sprintf("the demo allows %d requests per hour per client; try again in %d seconds", s.cfg.Limit, int(wait.Seconds())+1),
			RetryAfter: wait,
		}
	}
	start := time.Now()
	res, err := s.agent.Execute(ctx, request, timmy.ExecuteOptions{MaxOutputTokens: s.cfg.MaxOutputTokens})
	s.metrics.Observe(s.name, "demo", start, err)
	if err != nil {
		msg := "the agent failed"
		if timmy.ErrorCode(err) != timmy.EINTERNAL {
			msg += ": " + timmy.ErrorMessage(err)
		}
		return timmy.WorkResult{}, fmt.Errorf("demo: %w: %w", &timmy.Error{Code: timmy.EUNAVAILABLE, Message: msg}, err)
	}
	return res, nil
}
