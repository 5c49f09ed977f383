// Package stub is Timmy's embedded agent for development and tests. It is
// deterministic, says in every answer that it is a stub, and counts tokens
// from its own text, so the whole payment flow and the cost ledger can run
// without an LLM.
package stub

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/timmyhq/timmy"
)

// Model is the model name the stub reports.
const Model = "timmy-stub-1"

// DefaultRejectMarker is the text that makes the stub reject a request.
const DefaultRejectMarker = "[reject]"

// Config tunes the stub.
type Config struct {
	// RejectMarker makes Evaluate reject any request that contains it, so
	// tests can reach the rejection path. Default "[reject]".
	RejectMarker string
	// FailMarker makes Execute fail for any request that contains it, so
	// tests can reach the failure and refund paths. Default "[fail]".
	FailMarker string
	// Delay is how long each call takes, so tests can catch a job mid-work.
	Delay time.Duration
}

// Agent is the stub agent.
type Agent struct{ cfg Config }

var _ timmy.Agent = (*Agent)(nil)

// New returns a stub agent.
func New(cfg Config) *Agent {
	if cfg.RejectMarker == "" {
		cfg.RejectMarker = DefaultRejectMarker
	}
	if cfg.FailMarker == "" {
		cfg.FailMarker = "[fail]"
	}
	return &Agent{cfg: cfg}
}

// WorkModel names the stub model.
func (a *Agent) WorkModel() string { return Model }

func (a *Agent) wait(ctx context.Context) error {
	if a.cfg.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(a.cfg.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stub agent: %w", ctx.Err())
	}
}

// Evaluate accepts every request that does not contain the reject marker.
func (a *Agent) Evaluate(ctx context.Context, request string) (timmy.Evaluation, error) {
	if err := a.wait(ctx); err != nil {
		return timmy.Evaluation{}, err
	}
	ev := timmy.Evaluation{Accepted: true, Reason: "[stub] The request is within what this agent does."}
	if strings.Contains(request, a.cfg.RejectMarker) {
		ev = timmy.Evaluation{Accepted: false, Reason: fmt.Sprintf("[stub] The request contains the reject marker %q.", a.cfg.RejectMarker)}
	}
	ev.Usage = timmy.Usage{Model: Model, InputTokens: CountTokens(request), OutputTokens: CountTokens(ev.Reason)}
	return ev, nil
}

// Execute answers with a fixed text that quotes the request.
func (a *Agent) Execute(ctx context.Context, request string, opts timmy.ExecuteOptions) (timmy.WorkResult, error) {
	if err := a.wait(ctx); err != nil {
		return timmy.WorkResult{}, err
	}
	if strings.Contains(request, a.cfg.FailMarker) {
		return timmy.WorkResult{}, timmy.Errorf(timmy.EUNAVAILABLE, "stub agent: the request contains the fail marker %q", a.cfg.FailMarker)
	}
	text := fmt.Sprintf("[stub] This answer comes from Timmy's stub agent, not a real model. You asked: %q", request)
	if opts.MaxOutputTokens > 0 {
		words := strings.Fields(text)
		if int64(len(words)) > opts.MaxOutputTokens {
			text = strings.Join(words[:opts.MaxOutputTokens], " ")
		}
	}
	return timmy.WorkResult{
		Text:  text,
		Usage: timmy.Usage{Model: Model, InputTokens: CountTokens(request), OutputTokens: CountTokens(text)},
	}, nil
}

// CountTokens is the stub's token count: one per whitespace-separated word,
// and at least one, which is close enough to make ledgers look real.
func CountTokens(text string) int64 {
	n := int64(len(strings.Fields(text)))
	if n == 0 {
		return 1
	}
	return n
}
