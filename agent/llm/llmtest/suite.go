package llmtest

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/llm"
)

// Settings are the agent settings the shared tests vary.
type Settings struct {
	// MaxRetries and Timeout are set on the agent's config as given.
	MaxRetries int
	Timeout    time.Duration
	// BaseURL replaces the fake's address when not empty.
	BaseURL string
}

// Case is a reply an evaluation must fail on, with the exact message.
type Case struct {
	Name  string
	Reply Reply
	Msg   string
}

// Harness is how RunAgentTests drives one provider: its agent on its fake,
// the fake's replies, and its error type E.
type Harness[E error] struct {
	// Name starts the provider's messages, as in "anthropic".
	Name string
	// Setup starts the provider's fake and an agent on it with s.
	Setup func(t *testing.T, s Settings) (*Server, timmy.Agent)
	// Attempts reads the provider error's HTTP status and attempt count.
	Attempts func(e E) (status, attempts int)
	// RateLimited, ServerError and Truncated make the provider's 429,
	// 500 and cut-off 200 (see the provider fake's functions of the same
	// names).
	RateLimited, ServerError, Truncated func() Reply
	// Malformed are answers to an evaluation that must be errors, never
	// acceptances, in the provider's own wire format.
	Malformed []Case
}

// RunAgentTests checks what every agent does the same way because it is
// package llm's (bounded retries with backoff, timeouts, the output cap,
// strict decisions), against h's provider, so that each provider's wiring
// is proved on its own fake without each restating the tests.
func RunAgentTests[E error](t *testing.T, h Harness[E]) {
	t.Helper()
	fakeDefaults := Settings{MaxRetries: llm.DefaultMaxRetries, Timeout: 5 * time.Second}
	setup := func(t *testing.T, mod func(*Settings)) (*Server, timmy.Agent) {
		t.Helper()
		s := fakeDefaults
		if mod != nil {
			mod(&s)
		}
		return h.Setup(t, s)
	}
	requireFailure := func(t *testing.T, err error, msg string) E {
		t.Helper()
		return RequireAgentError[E](t, err, msg)
	}

	t.Run("ExecuteOutputCapCanOnlyBeLowered", func(t *testing.T) {
		t.Parallel()
		for _, lower := range []int64{128, 256} {
			srv, agent := setup(t, nil)
			srv.WorkReply("A long answer", 100, 1000)
			res, err := agent.Execute(t.Context(), "demo", timmy.ExecuteOptions{MaxOutputTokens: lower})
			require.NoError(t, err)
			require.Equal(t, lower, srv.Exchanges()[0].MaxTokens)
			require.Equal(t, lower, res.Usage.OutputTokens) // the fake caps output as the API does

			_, err = agent.Execute(t.Context(), "greedy", timmy.ExecuteOptions{MaxOutputTokens: 1 << 20})
			require.NoError(t, err)
			require.EqualValues(t, llm.DefaultMaxOutputTokens, srv.Exchanges()[1].MaxTokens)
		}
	})

	t.Run("RateLimitedThenSucceeds", func(t *testing.T) {
		t.Parallel()
		srv, agent := setup(t, nil)
		srv.Enqueue(h.RateLimited())
		srv.WorkReply("done", 10, 20)
		res, err := agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
		require.NoError(t, err)
		require.Equal(t, "done", res.Text)
		require.Equal(t, 2, srv.Calls())
		require.Equal(t, http.StatusTooManyRequests, srv.Exchanges()[0].Status)
	})

	// A server asking for an hour's wait is still retried within the
	// configured cap; if the cap were ignored this test would time out.
	t.Run("RetryAfterIsCappedByMaxDelay", func(t *testing.T) {
		t.Parallel()
		srv, agent := setup(t, nil)
		slow := h.RateLimited()
		slow.Header = http.Header{"Retry-After": {"3600"}}
		srv.Enqueue(slow)
		ev, err := agent.Evaluate(t.Context(), "task")
		require.NoError(t, err)
		require.True(t, ev.Accepted)
		require.Equal(t, 2, srv.Calls())
	})

	t.Run("PersistentServerErrorIsBoundedAndCounted", func(t *testing.T) {
		t.Parallel()
		for _, retries := range []int{0, 1, 3, 4} {
			srv, agent := setup(t, func(s *Settings) { s.MaxRetries = retries })
			for range 10 {
				srv.Enqueue(h.ServerError())
			}
			_, err := agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
			want := map[int]string{
				0: h.Name + ": server error (500) after 1 attempt",
				1: h.Name + ": server error (500) after 2 attempts",
				3: h.Name + ": server error (500) after 4 attempts",
				4: h.Name + ": server error (500) after 5 attempts",
			}[retries]
			status, attempts := h.Attempts(requireFailure(t, err, want))
			require.Equal(t, retries+1, attempts)
			require.Equal(t, http.StatusInternalServerError, status)
			require.Equal(t, retries+1, srv.Calls())
		}
	})

	t.Run("TruncatedBodyIsRetried", func(t *testing.T) {
		t.Parallel()
		srv, agent := setup(t, nil)
		srv.Enqueue(h.Truncated())
		srv.WorkReply("whole", 5, 6)
		res, err := agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
		require.NoError(t, err)
		require.Equal(t, "whole", res.Text)
		require.Equal(t, 2, srv.Calls())

		srv.Enqueue(h.Truncated(), h.Truncated(), h.Truncated())
		_, err = agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
		requireFailure(t, err, h.Name+": response cut off after 3 attempts")
		require.Equal(t, 5, srv.Calls())
	})

	t.Run("HungAttemptTimesOutAndIsRetried", func(t *testing.T) {
		t.Parallel()
		srv, agent := setup(t, func(s *Settings) { s.Timeout = 100 * time.Millisecond })
		srv.Enqueue(Hang())
		ev, err := agent.Evaluate(t.Context(), "task")
		require.NoError(t, err)
		require.True(t, ev.Accepted)
		require.Equal(t, 2, srv.Calls())

		srv.Enqueue(Hang(), Hang(), Hang())
		_, err = agent.Evaluate(t.Context(), "task")
		requireFailure(t, err, h.Name+": no answer within 100ms after 3 attempts")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("HungAttemptTimesOutAndIsBounded", func(t *testing.T) {
		t.Parallel()
		srv, agent := setup(t, func(s *Settings) {
			s.Timeout = 100 * time.Millisecond
			s.MaxRetries = 1
		})
		srv.Enqueue(Hang(), Hang())
		_, err := agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
		requireFailure(t, err, h.Name+": no answer within 100ms after 2 attempts")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 2, srv.Calls())
	})

	t.Run("CallerCancellationIsNotAnAPIFailure", func(t *testing.T) {
		t.Parallel()
		srv, agent := setup(t, nil)
		srv.Enqueue(Hang())
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := agent.Execute(ctx, "task", timmy.ExecuteOptions{})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		var e E
		require.False(t, errors.As(err, &e))
		require.Equal(t, 1, srv.Calls())
	})

	t.Run("ConnectionRefusedIsRetriedAndBounded", func(t *testing.T) {
		t.Parallel()
		_, agent := setup(t, func(s *Settings) { s.BaseURL = "http://127.0.0.1:1" }) // nothing listens on port 1
		_, err := agent.Evaluate(t.Context(), "task")
		status, _ := h.Attempts(requireFailure(t, err, h.Name+": connection failed after 3 attempts"))
		require.Zero(t, status)
	})

	t.Run("MalformedEvaluationIsAnErrorNeverAnAcceptance", func(t *testing.T) {
		t.Parallel()
		for _, c := range h.Malformed {
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				srv, agent := setup(t, nil)
				srv.Enqueue(c.Reply)
				ev, err := agent.Evaluate(t.Context(), "task")
				requireFailure(t, err, c.Msg)
				require.False(t, ev.Accepted)
				require.Equal(t, 1, srv.Calls(), "a malformed answer is not retried")
			})
		}
	})
}
