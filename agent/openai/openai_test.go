package openai_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/openai"
	"github.com/timmyhq/timmy/agent/openai/openaitest"
	"github.com/timmyhq/timmy/internal/env"
)

type bundle struct {
	srv   *openaitest.Server
	agent *openai.Agent
	logs  *syncBuffer
}

// syncBuffer collects log output from concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// setup starts a fake server and an agent on it; mod may adjust the
// config. The agent's log is captured.
func setup(t *testing.T, mod func(*openai.Config)) bundle {
	t.Helper()
	srv := openaitest.New(t)
	logs := &syncBuffer{}
	cfg := srv.Config()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if mod != nil {
		mod(&cfg)
	}
	a, err := openai.New(cfg)
	require.NoError(t, err)
	return bundle{srv: srv, agent: a, logs: logs}
}

func requireAgentError(t *testing.T, err error, msg string) *openai.Error {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, msg, err.Error())
	require.Equal(t, timmy.EUNAVAILABLE, timmy.ErrorCode(err))
	require.Equal(t, msg, timmy.ErrorMessage(err))
	var oe *openai.Error
	require.ErrorAs(t, err, &oe)
	return oe
}

func TestEvaluateAcceptsWithUsage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Accept("Clear task.")
	b.srv.EvalUsage(150, 20)
	ev, err := b.agent.Evaluate(t.Context(), "Summarise the Bitcoin whitepaper.")
	require.NoError(t, err)
	require.True(t, ev.Accepted)
	require.Equal(t, "Clear task.", ev.Reason)
	require.Equal(t, timmy.Usage{Model: openaitest.DefaultModel, InputTokens: 150, OutputTokens: 20}, ev.Usage)

	ex := b.srv.Exchanges()[0]
	require.Equal(t, openaitest.Evaluate, ex.Kind)
	require.Contains(t, ex.Request, "Summarise the Bitcoin whitepaper.")
	require.Contains(t, ex.System, `"accepted"`)
	require.Empty(t, ex.Authorization, "no key configured, none sent")
	require.Equal(t, ev.Usage, b.srv.LastUsage(openaitest.Evaluate))
}

func TestEvaluateRejects(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Reject("Needs live data.")
	ev, err := b.agent.Evaluate(t.Context(), "What's the BTC price right now?")
	require.NoError(t, err)
	require.False(t, ev.Accepted)
	require.Equal(t, "Needs live data.", ev.Reason)
}

func TestEvaluateUnwrapsAJSONFence(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(openaitest.Content(openaitest.DefaultModel, "```json\n{\"accepted\": false, \"reason\": \"Too vague.\"}\n```", 10, 5))
	ev, err := b.agent.Evaluate(t.Context(), "do stuff")
	require.NoError(t, err)
	require.False(t, ev.Accepted)
	require.Equal(t, "Too vague.", ev.Reason)
}

func TestExecuteReturnsTextAndUsage(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *openai.Config) {
		c.WorkModel = "qwen2.5:14b"
		c.EvalModel = "qwen2.5:3b"
	})
	b.srv.WorkReply("Lightning is a payment network.", 900, 2100)
	res, err := b.agent.Execute(t.Context(), "Explain Lightning.", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, "Lightning is a payment network.", res.Text)
	require.Equal(t, timmy.Usage{Model: "qwen2.5:14b", InputTokens: 900, OutputTokens: 2100}, res.Usage)
	require.Equal(t, res.Usage, b.srv.LastUsage(openaitest.Work))
	ex := b.srv.Exchanges()[0]
	require.Equal(t, "qwen2.5:14b", ex.Model)
	require.Equal(t, "Explain Lightning.", ex.Request)
	require.EqualValues(t, openai.DefaultMaxOutputTokens, ex.MaxTokens)
	require.Equal(t, "qwen2.5:3b", b.agent.EvalModel())
}

func TestExecuteOutputCapCanOnlyBeLowered(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.WorkReply("long", 10, 1000)
	res, err := b.agent.Execute(t.Context(), "demo", timmy.ExecuteOptions{MaxOutputTokens: 128})
	require.NoError(t, err)
	require.EqualValues(t, 128, b.srv.Exchanges()[0].MaxTokens)
	require.EqualValues(t, 128, res.Usage.OutputTokens)
	_, err = b.agent.Execute(t.Context(), "greedy", timmy.ExecuteOptions{MaxOutputTokens: 1 << 20})
	require.NoError(t, err)
	require.EqualValues(t, openai.DefaultMaxOutputTokens, b.srv.Exchanges()[1].MaxTokens)
}

func TestExecuteDropsALeadingThinkBlock(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.WorkReply("<think>\nThe user wants a haiku.\n</think>\n\nSats drip, fees fall low", 10, 40)
	res, err := b.agent.Execute(t.Context(), "haiku", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, "Sats drip, fees fall low", res.Text)
	require.EqualValues(t, 40, res.Usage.OutputTokens)
}

func TestAPIKeyIsSentWhenConfigured(t *testing.T) {
	t.Parallel()
	srv := openaitest.New(t)
	srv.APIKey = "sk-proj-abcdefghijklmnop"
	a := srv.NewAgent(t)
	_, err := a.Evaluate(t.Context(), "task")
	require.NoError(t, err)
	require.Equal(t, "Bearer sk-proj-abcdefghijklmnop", srv.Exchanges()[0].Authorization)
}

func TestInvalidKeyIsNotRetriedAndNotLeaked(t *testing.T) {
	t.Parallel()
	const key = "sk-proj-SECRET-do-not-leak-1234"
	srv := openaitest.New(t)
	srv.APIKey = "sk-proj-the-right-one"
	cfg := srv.Config()
	cfg.APIKey = key
	a, err := openai.New(cfg)
	require.NoError(t, err)
	_, err = a.Evaluate(t.Context(), "task")
	oe := requireAgentError(t, err, "openai-compatible: invalid API key (401)")
	require.Equal(t, "invalid_api_key", oe.Code)
	require.NotContains(t, err.Error(), "SECRET")
	require.Equal(t, 1, srv.Calls())
}

func TestRateLimitedThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(openaitest.RateLimited())
	res, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, openaitest.DefaultWorkText, res.Text)
	require.Equal(t, 2, b.srv.Calls())
}

func TestModelLoadingIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(openaitest.Loading(), openaitest.Loading())
	ev, err := b.agent.Evaluate(t.Context(), "task")
	require.NoError(t, err)
	require.True(t, ev.Accepted)
	require.Equal(t, 3, b.srv.Calls())

	b.srv.Enqueue(openaitest.Loading(), openaitest.Loading(), openaitest.Loading())
	_, err = b.agent.Evaluate(t.Context(), "task")
	requireAgentError(t, err, "openai-compatible: unavailable (503) after 3 attempts")
}

func TestPersistentServerErrorIsBoundedAndCounted(t *testing.T) {
	t.Parallel()
	for _, retries := range []int{0, 3} {
		b := setup(t, func(c *openai.Config) { c.MaxRetries = retries })
		for range 10 {
			b.srv.Enqueue(openaitest.ServerError())
		}
		_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
		want := map[int]string{
			0: "openai-compatible: server error (500) after 1 attempt",
			3: "openai-compatible: server error (500) after 4 attempts",
		}[retries]
		oe := requireAgentError(t, err, want)
		require.Equal(t, retries+1, oe.Attempts)
		require.Equal(t, http.StatusInternalServerError, oe.StatusCode)
		require.Equal(t, retries+1, b.srv.Calls())
	}
}

func TestTruncatedBodyIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Enqueue(openaitest.Truncated())
	res, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.Equal(t, openaitest.DefaultWorkText, res.Text)
	require.Equal(t, 2, b.srv.Calls())

	b.srv.Enqueue(openaitest.Truncated(), openaitest.Truncated(), openaitest.Truncated())
	_, err = b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "openai-compatible: response cut off after 3 attempts")
}

func TestHungAttemptTimesOutAndIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *openai.Config) {
		c.Timeout = 100 * time.Millisecond
		c.MaxRetries = 1
	})
	b.srv.Enqueue(openaitest.Hang(), openaitest.Hang())
	_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "openai-compatible: no answer within 100ms after 2 attempts")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 2, b.srv.Calls())
}

func TestClientErrorsCarryTheServersMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// Ollama, for a model that was never pulled.
	b.srv.Enqueue(openaitest.Reply{Status: http.StatusNotFound, Body: `{"error":{"message":"model \"llama9\" not found, try pulling it first","type":"api_error","param":null,"code":null}}`})
	_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, `openai-compatible: not found (404): model "llama9" not found, try pulling it first`)

	// vLLM puts the message at the top level, with a numeric code.
	b.srv.Enqueue(openaitest.Reply{Status: http.StatusBadRequest, Body: `{"object":"error","message":"This model's maximum context length is 8192 tokens.","type":"BadRequestError","param":null,"code":400}`})
	_, err = b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "openai-compatible: request rejected (400): This model's maximum context length is 8192 tokens.")

	// An exhausted quota is a 429 that no retry can fix.
	b.srv.Enqueue(openaitest.Error(http.StatusTooManyRequests, "insufficient_quota", "insufficient_quota", "You exceeded your current quota."))
	_, err = b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "openai-compatible: quota exceeded (429)")
	require.Equal(t, 3, b.srv.Calls())
}

func TestMalformedEvaluationIsAnErrorNeverAnAcceptance(t *testing.T) {
	t.Parallel()
	m := openaitest.DefaultModel
	cases := []struct {
		name  string
		reply openaitest.Reply
		msg   string
	}{
		{"prose", openaitest.Content(m, "Yes, I accept this request.", 10, 5), "openai-compatible: malformed evaluation: not a JSON object"},
		{"prose around json", openaitest.Content(m, `Sure! {"accepted":true,"reason":"ok"}`, 10, 5), "openai-compatible: malformed evaluation: not a JSON object"},
		{"fence of another language", openaitest.Content(m, "```python\n{\"accepted\":true,\"reason\":\"ok\"}\n```", 10, 5), "openai-compatible: malformed evaluation: not a JSON object"},
		{"accepted as a string", openaitest.Content(m, `{"accepted":"yes","reason":"ok"}`, 10, 5), "openai-compatible: malformed evaluation: accepted is not a boolean"},
		{"missing reason", openaitest.Content(m, `{"accepted":true}`, 10, 5), "openai-compatible: malformed evaluation: want exactly the fields accepted and reason, got accepted"},
		{"extra field", openaitest.Content(m, `{"accepted":true,"reason":"ok","score":1}`, 10, 5), "openai-compatible: malformed evaluation: want exactly the fields accepted and reason, got accepted, reason, score"},
		{"empty reason", openaitest.Content(m, `{"accepted":true,"reason":""}`, 10, 5), "openai-compatible: malformed evaluation: reason is empty"},
		{"empty content", openaitest.Content(m, ``, 10, 0), "openai-compatible: malformed evaluation: not a JSON object"},
		{"no choices", openaitest.Reply{Body: `{"id":"x","object":"chat.completion","created":1,"model":"llama3.2","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1}}`}, "openai-compatible: response without choices"},
		{"refusal", openaitest.Reply{Body: `{"id":"x","object":"chat.completion","created":1,"model":"llama3.2","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}`}, "openai-compatible: the model refused the request"},
		{"not JSON at all", openaitest.Reply{Body: `<html>502 Bad Gateway</html>`}, "openai-compatible: malformed response"},
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

func TestMissingUsageIsEstimatedAndLogged(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.OmitUsage(true)
	text := strings.Repeat("abcd", 50) // 200 bytes: 50 tokens
	b.srv.WorkReply(text, 999, 999)
	res, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 50, res.Usage.OutputTokens)
	require.Positive(t, res.Usage.InputTokens)
	require.Zero(t, b.srv.LastUsage(openaitest.Work).OutputTokens, "the fake returned no usage")
	require.Contains(t, b.logs.String(), "tokens estimated from text")
}

func TestMissingUsageIsAnErrorWhenRequired(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *openai.Config) { c.RequireUsage = true })
	b.srv.OmitUsage(true)
	_, err := b.agent.Execute(t.Context(), "task", timmy.ExecuteOptions{})
	requireAgentError(t, err, "openai-compatible: response without token usage")
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{
		"OPENAI_BASE_URL":      "http://localhost:11434/v1",
		"WORK_MODEL":           "llama3.2",
		"AGENT_MAX_RETRIES":    "1",
		"OPENAI_REQUIRE_USAGE": "true",
	})
	cfg := openai.ConfigFromEnv(e)
	require.NoError(t, e.Err())
	require.Equal(t, "http://localhost:11434/v1", cfg.BaseURL)
	require.Empty(t, cfg.APIKey)
	require.Equal(t, "llama3.2", cfg.WorkModel)
	require.Equal(t, "llama3.2", cfg.EvalModel, "the eval model defaults to the work model")
	require.Equal(t, 1, cfg.MaxRetries)
	require.True(t, cfg.RequireUsage)
	_, err := openai.New(cfg)
	require.NoError(t, err)

	_, err = openai.New(openai.ConfigFromEnv(env.FromMap(map[string]string{"OPENAI_BASE_URL": "http://x/v1"})))
	require.ErrorContains(t, err, "work model is required")
	_, err = openai.New(openai.ConfigFromEnv(env.FromMap(map[string]string{"WORK_MODEL": "m"})))
	require.ErrorContains(t, err, "base URL is required")
}
