package anthropic_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/anthropic"
	"github.com/timmyhq/timmy/agent/anthropic/anthropictest"
	"github.com/timmyhq/timmy/agent/llm/llmtest"
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
	return llmtest.RequireAgentError[*anthropic.Error](t, err, msg)
}

// TestSharedBehaviour runs the tests every agent passes the same way
// (retries, timeouts, the output cap, strict decisions) on this agent and
// its fake, with the Messages API's own malformed evaluations.
func TestSharedBehaviour(t *testing.T) {
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
	llmtest.RunAgentTests(t, llmtest.Harness[*anthropic.Error]{
		Name: "anthropic",
		Setup: func(t *testing.T, s llmtest.Settings) (*llmtest.Server, timmy.Agent) {
			b := setup(t, func(c *anthropic.Config) {
				c.MaxRetries, c.Timeout = s.MaxRetries, s.Timeout
				if s.BaseURL != "" {
					c.BaseURL = s.BaseURL
				}
			})
			return b.srv.Server, b.agent
		},
		Attempts:    func(e *anthropic.Error) (int, int) { return e.StatusCode, e.Attempts },
		RateLimited: anthropictest.RateLimited,
		ServerError: anthropictest.ServerError,
		Truncated:   anthropictest.Truncated,
		Malformed: []llmtest.Case{
			{Name: "no tool call", Reply: anthropictest.TextOnly(model, "Sure, I accept!", 10, 5), Msg: `anthropic: evaluation without a decide tool call (stop_reason "end_turn")`},
			{Name: "accepted as a string", Reply: anthropictest.DecisionInput(model, `{"accepted":"true","reason":"ok"}`), Msg: "anthropic: malformed evaluation: accepted is not a boolean"},
			{Name: "accepted as null", Reply: anthropictest.DecisionInput(model, `{"accepted":null,"reason":"ok"}`), Msg: "anthropic: malformed evaluation: accepted is not a boolean"},
			{Name: "reason as a number", Reply: anthropictest.DecisionInput(model, `{"accepted":true,"reason":42}`), Msg: "anthropic: malformed evaluation: reason is not a string"},
			{Name: "missing reason", Reply: anthropictest.DecisionInput(model, `{"accepted":true}`), Msg: "anthropic: malformed evaluation: want exactly the fields accepted and reason, got accepted"},
			{Name: "missing accepted", Reply: anthropictest.DecisionInput(model, `{"reason":"ok"}`), Msg: "anthropic: malformed evaluation: want exactly the fields accepted and reason, got reason"},
			{Name: "extra field", Reply: anthropictest.DecisionInput(model, `{"accepted":true,"reason":"ok","confidence":0.9}`), Msg: "anthropic: malformed evaluation: want exactly the fields accepted and reason, got accepted, confidence, reason"},
			{Name: "wrong case", Reply: anthropictest.DecisionInput(model, `{"Accepted":true,"reason":"ok"}`), Msg: "anthropic: malformed evaluation: want exactly the fields accepted and reason, got Accepted, reason"},
			{Name: "empty reason", Reply: anthropictest.DecisionInput(model, `{"accepted":true,"reason":"   "}`), Msg: "anthropic: malformed evaluation: reason is empty"},
			{Name: "not an object", Reply: anthropictest.DecisionInput(model, `[true,"ok"]`), Msg: "anthropic: malformed evaluation: not a JSON object"},
			{Name: "two tool calls", Reply: twoCalls, Msg: "anthropic: evaluation with 2 tool calls, want one"},
			{Name: "another tool", Reply: otherTool, Msg: `anthropic: evaluation called tool "approve", want "decide"`},
			{Name: "no usage", Reply: noUsage, Msg: "anthropic: response without token usage"},
			{Name: "not JSON at all", Reply: anthropictest.Reply{Body: `<html>502 Bad Gateway</html>`}, Msg: "anthropic: malformed response"},
		},
	})
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
