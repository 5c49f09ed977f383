package anthropic_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/anthropic"
	"github.com/timmyhq/timmy/agent/anthropic/anthropictest"
	"github.com/timmyhq/timmy/internal/env"
)

type bundle struct {
	srv   *anthropictest.Server
	agent *anthropic.Agent
}

// setup starts a fake API and an agent on it; mod may adjust the config.
func setup(t *testing.T, mod func(*anthropic.Config)) bundle {
	t.Helper()
	srv := anthropictest.New(t)
	cfg := srv.Config()
	if mod != nil {
		mod(&cfg)
	}
	a, err := anthropic.New(cfg)
	require.NoError(t, err)
	return bundle{srv: srv, agent: a}
}

// requireAgentError checks err is the agent's caller-safe error with msg,
// coded as a backend failure for the HTTP layer and the job.
func requireAgentError(t *testing.T, err error, msg string) *anthropic.Error {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, msg, err.Error())
	require.Equal(t, timmy.EUNAVAILABLE, timmy.ErrorCode(err))
	require.Equal(t, msg, timmy.ErrorMessage(err))
	var ae *anthropic.Error
	require.ErrorAs(t, err, &ae)
	return ae
}

func TestEvaluateAccepts(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Accept("A clear writing task.")
	b.srv.EvalUsage(211, 37)

	ev, err := b.agent.Evaluate(t.Context(), "Write a limerick about fees.")
	require.NoError(t, err)
	require.True(t, ev.Accepted)
	require.Equal(t, "A clear writing task.", ev.Reason)
	require.Equal(t, timmy.Usage{Model: "claude-haiku-4-5", InputTokens: 211, OutputTokens: 37}, ev.Usage)

	exs := b.srv.Exchanges()
	require.Len(t, exs, 1)
	require.Equal(t, anthropictest.Evaluate, exs[0].Kind)
	require.Equal(t, "claude-haiku-4-5", exs[0].Model)
	require.Contains(t, exs[0].Request, "Write a limerick about fees.")
	require.Contains(t, exs[0].System, "decide tool")
	require.Equal(t, ev.Usage, b.srv.LastUsage(anthropictest.Evaluate))
}

func TestEvaluateRejects(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Reject("Timmy cannot browse the web.")
	ev, err := b.agent.Evaluate(t.Context(), "What is on the front page of the news today?")
	require.NoError(t, err)
	require.False(t, ev.Accepted)
	require.Equal(t, "Timmy cannot browse the web.", ev.Reason)
	require.EqualValues(t, anthropictest.DefaultEvalInputTokens, ev.Usage.InputTokens)
}

func TestExecuteReturnsTextAndUsage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.WorkReply("Sats are small.", 1200, 3400)
	res, err := b.agent.Execute(t.Context(), "Explain sats.", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, "Sats are small.", res.Text)
	require.Equal(t, timmy.Usage{Model: "claude-sonnet-4-5", InputTokens: 1200, OutputTokens: 3400}, res.Usage)
	require.Equal(t, res.Usage, b.srv.LastUsage(anthropictest.Work))

	ex := b.srv.Exchanges()[0]
	require.Equal(t, anthropictest.Work, ex.Kind)
	require.Equal(t, "Explain sats.", ex.Request)
	require.EqualValues(t, anthropic.DefaultMaxOutputTokens, ex.MaxTokens)
	require.Equal(t, "claude-sonnet-4-5", b.agent.WorkModel())
	require.Equal(t, "claude-haiku-4-5", b.agent.EvalModel())
}

func TestExecuteOutputCapCanOnlyBeLowered(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.WorkReply("A long answer", 100, 1000)

	res, err := b.agent.Execute(t.Context(), "demo", timmy.ExecuteOptions{MaxOutputTokens: 256})
	require.NoError(t, err)
	require.EqualValues(t, 256, b.srv.Exchanges()[0].MaxTokens)
	require.EqualValues(t, 256, res.Usage.OutputTokens) // the fake caps output as the API does

	_, err = b.agent.Execute(t.Context(), "greedy", timmy.ExecuteOptions{MaxOutputTokens: 1 << 20})
	require.NoError(t, err)
	require.EqualValues(t, anthropic.DefaultMaxOutputTokens, b.srv.Exchanges()[1].MaxTokens)
}

func TestRateLimitedThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(anthropictest.RateLimited())
	b.srv.WorkReply("done", 10, 20)
	res, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, "done", res.Text)
	require.Equal(t, 2, b.srv.Calls())
	require.Equal(t, http.StatusTooManyRequests, b.srv.Exchanges()[0].Status)
}

// A server asking for an hour's wait is still retried within the
// configured cap; if the cap were ignored this test would time out.
func TestRetryAfterIsCappedByMaxDelay(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	slow := anthropictest.RateLimited()
	slow.Header = http.Header{"Retry-After": {"3600"}}
	b.srv.Enqueue(slow)
	ev, err := b.agent.Evaluate(t.Context(), "task")
	require.NoError(t, err)
	require.True(t, ev.Accepted)
	require.Equal(t, 2, b.srv.Calls())
}

func TestOverloadedGivesUpAfterBoundedAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // MaxRetries 2: three attempts
	b.srv.Enqueue(anthropictest.Overloaded(), anthropictest.Overloaded(), anthropictest.Overloaded(), anthropictest.Overloaded())
	_, err := b.agent.Evaluate(t.Context(), "task")
	ae := requireAgentError(t, err, "anthropic: overloaded (529) after 3 attempts")
	require.Equal(t, 529, ae.StatusCode)
	require.Equal(t, "overloaded_error", ae.Type)
	require.Equal(t, 3, ae.Attempts)
	require.Equal(t, 3, b.srv.Calls())
}

func TestOverloadedThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(anthropictest.Overloaded(), anthropictest.Overloaded())
	ev, err := b.agent.Evaluate(t.Context(), "task")
	require.NoError(t, err)
	require.True(t, ev.Accepted)
	require.Equal(t, 3, b.srv.Calls())
}

func TestPersistentServerErrorIsBoundedAndCounted(t *testing.T) {
	t.Parallel()
	for _, retries := range []int{0, 1, 4} {
		b := setup(t, func(c *anthropic.Config) { c.MaxRetries = retries })
		for range 10 {
			b.srv.Enqueue(anthropictest.ServerError())
		}
		_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
		want := map[int]string{
			0: "anthropic: server error (500) after 1 attempt",
			1: "anthropic: server error (500) after 2 attempts",
			4: "anthropic: server error (500) after 5 attempts",
		}[retries]
		ae := requireAgentError(t, err, want)
		require.Equal(t, retries+1, ae.Attempts)
		require.Equal(t, retries+1, b.srv.Calls())
	}
}

func TestTruncatedBodyIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(anthropictest.Truncated())
	b.srv.WorkReply("whole", 5, 6)
	res, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, "whole", res.Text)
	require.Equal(t, 2, b.srv.Calls())

	b.srv.Enqueue(anthropictest.Truncated(), anthropictest.Truncated(), anthropictest.Truncated())
	_, err = b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "anthropic: response cut off after 3 attempts")
	require.Equal(t, 5, b.srv.Calls())
}

func TestHungAttemptTimesOutAndIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *anthropic.Config) { c.Timeout = 100 * time.Millisecond })
	b.srv.Enqueue(anthropictest.Hang())
	ev, err := b.agent.Evaluate(t.Context(), "task")
	require.NoError(t, err)
	require.True(t, ev.Accepted)
	require.Equal(t, 2, b.srv.Calls())

	b.srv.Enqueue(anthropictest.Hang(), anthropictest.Hang(), anthropictest.Hang())
	_, err = b.agent.Evaluate(t.Context(), "task")
	requireAgentError(t, err, "anthropic: no answer within 100ms after 3 attempts")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestMalformedEvaluationIsAnErrorNeverAnAcceptance(t *testing.T) {
	t.Parallel()
	model := anthropic.DefaultEvalModel
	twoCalls := anthropictest.Reply{Body: anthropictest.Message(model, []any{
		anthropictest.ToolUseBlock("toolu_1", "decide", []byte(`{"accepted":true,"reason":"a"}`)),
		anthropictest.ToolUseBlock("toolu_2", "decide", []byte(`{"accepted":false,"reason":"b"}`)),
	}, "tool_use", 10, 10)}
	otherTool := anthropictest.Reply{Body: anthropictest.Message(model, []any{
		anthropictest.ToolUseBlock("toolu_1", "approve", []byte(`{"accepted":true,"reason":"a"}`)),
	}, "tool_use", 10, 10)}
	noUsage := anthropictest.Reply{Body: `{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"tool_use","id":"t","name":"decide","input":{"accepted":true,"reason":"ok"}}],"stop_reason":"tool_use"}`}
	cases := []struct {
		name  string
		reply anthropictest.Reply
		msg   string
	}{
		{"no tool call", anthropictest.TextOnly(model, "Sure, I accept!", 10, 5), `anthropic: evaluation without a decide tool call (stop_reason "end_turn")`},
		{"accepted as a string", anthropictest.DecisionInput(model, `{"accepted":"true","reason":"ok"}`), "anthropic: malformed evaluation: accepted is not a boolean"},
		{"accepted as null", anthropictest.DecisionInput(model, `{"accepted":null,"reason":"ok"}`), "anthropic: malformed evaluation: accepted is not a boolean"},
		{"reason as a number", anthropictest.DecisionInput(model, `{"accepted":true,"reason":42}`), "anthropic: malformed evaluation: reason is not a string"},
		{"missing reason", anthropictest.DecisionInput(model, `{"accepted":true}`), "anthropic: malformed evaluation: want exactly the fields accepted and reason, got accepted"},
		{"missing accepted", anthropictest.DecisionInput(model, `{"reason":"ok"}`), "anthropic: malformed evaluation: want exactly the fields accepted and reason, got reason"},
		{"extra field", anthropictest.DecisionInput(model, `{"accepted":true,"reason":"ok","confidence":0.9}`), "anthropic: malformed evaluation: want exactly the fields accepted and reason, got accepted, confidence, reason"},
		{"wrong case", anthropictest.DecisionInput(model, `{"Accepted":true,"reason":"ok"}`), "anthropic: malformed evaluation: want exactly the fields accepted and reason, got Accepted, reason"},
		{"empty reason", anthropictest.DecisionInput(model, `{"accepted":true,"reason":"   "}`), "anthropic: malformed evaluation: reason is empty"},
		{"not an object", anthropictest.DecisionInput(model, `[true,"ok"]`), "anthropic: malformed evaluation: not a JSON object"},
		{"two tool calls", twoCalls, "anthropic: evaluation with 2 tool calls, want one"},
		{"another tool", otherTool, `anthropic: evaluation called tool "approve", want "decide"`},
		{"no usage", noUsage, "anthropic: response without token usage"},
		{"not JSON at all", anthropictest.Reply{Body: `<html>502 Bad Gateway</html>`}, "anthropic: malformed response"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.srv.Enqueue(c.reply)
			ev, err := b.agent.Evaluate(t.Context(), "task")
			requireAgentError(t, err, c.msg)
			require.False(t, ev.Accepted)
			require.Equal(t, 1, b.srv.Calls(), "a malformed answer is not retried")
		})
	}
}

func TestInvalidKeyIsNotRetriedAndNotLeaked(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-api03-SECRET-do-not-leak"
	b := setup(t, func(c *anthropic.Config) { c.APIKey = key })
	_, err := b.agent.Evaluate(t.Context(), "task")
	ae := requireAgentError(t, err, "anthropic: invalid API key (401)")
	require.Equal(t, "authentication_error", ae.Type)
	require.Equal(t, 1, b.srv.Calls())
	require.NotContains(t, err.Error(), key)
}

func TestClientErrorsCarryTheAPIsMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(anthropictest.Error(http.StatusBadRequest, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))
	_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "anthropic: request rejected (400): prompt is too long: 250000 tokens > 200000 maximum")

	b.srv.Enqueue(anthropictest.Error(http.StatusNotFound, "not_found_error", "model: claude-nonexistent"))
	_, err = b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "anthropic: not found (404): model: claude-nonexistent")

	// A spend cap is a 429 that no retry can fix.
	spend := anthropictest.Error(http.StatusTooManyRequests, "rate_limit_error", "You have reached your specified workspace API usage limits.")
	spend.Body = strings.Replace(spend.Body, `"type":"rate_limit_error"`, `"type":"rate_limit_error","details":{"error_code":"enforced_spend_limit_reached"}`, 1)
	b.srv.Enqueue(spend)
	_, err = b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "anthropic: spend limit reached (429)")
	require.Equal(t, 3, b.srv.Calls())
}

func TestEmptyWorkAnswerIsAnError(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(anthropictest.Reply{Body: anthropictest.Message(anthropic.DefaultWorkModel, []any{}, "refusal", 10, 0)})
	_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "anthropic: the model refused the request")
}

func TestCallerCancellationIsNotAnAPIFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(anthropictest.Hang())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := b.agent.Execute(ctx, "task", timmy.ExecuteOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ae *anthropic.Error
	require.False(t, errors.As(err, &ae))
	require.Equal(t, 1, b.srv.Calls())
}

func TestConnectionRefusedIsRetriedAndBounded(t *testing.T) {
	t.Parallel()
	srv := anthropictest.New(t)
	cfg := srv.Config()
	cfg.BaseURL = "http://127.0.0.1:1" // nothing listens on port 1
	a, err := anthropic.New(cfg)
	require.NoError(t, err)
	_, err = a.Evaluate(t.Context(), "task")
	ae := requireAgentError(t, err, "anthropic: connection failed after 3 attempts")
	require.Zero(t, ae.StatusCode)
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{
		"ANTHROPIC_API_KEY":      "sk-ant-x",
		"EVAL_MODEL":             "claude-haiku-4-5-20251001",
		"AGENT_TIMEOUT":          "30s",
		"AGENT_MAX_RETRIES":      "5",
		"WORK_MAX_OUTPUT_TOKENS": "2048",
	})
	cfg := anthropic.ConfigFromEnv(e)
	require.NoError(t, e.Err())
	require.Equal(t, "sk-ant-x", cfg.APIKey)
	require.Equal(t, anthropic.DefaultBaseURL, cfg.BaseURL)
	require.Equal(t, "claude-haiku-4-5-20251001", cfg.EvalModel)
	require.Equal(t, anthropic.DefaultWorkModel, cfg.WorkModel)
	require.Equal(t, 30*time.Second, cfg.Timeout)
	require.Equal(t, 5, cfg.MaxRetries)
	require.EqualValues(t, 2048, cfg.MaxOutputTokens)
	require.Equal(t, anthropic.DefaultConfig("sk-ant-y").RetryMaxDelay, cfg.RetryMaxDelay)

	_, err := anthropic.New(anthropic.ConfigFromEnv(env.FromMap(nil)))
	require.ErrorContains(t, err, "API key is required")
	_, err = anthropic.New(anthropic.Config{APIKey: "k", MaxRetries: 50})
	require.ErrorContains(t, err, "max retries")
}
