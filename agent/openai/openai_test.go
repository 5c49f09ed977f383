package openai_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/llm/llmtest"
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

// requireAgentError checks err is the agent's caller-safe error with msg,
// coded as a backend failure for the HTTP layer and the job.
func requireAgentError(t *testing.T, err error, msg string) *openai.Error {
	t.Helper()
	return llmtest.RequireAgentError[*openai.Error](t, err, msg)
}

// TestSharedBehaviour runs the tests every agent passes the same way
// (retries, timeouts, the output cap, strict decisions) on this agent and
// its fake, with chat completions' own malformed evaluations.
func TestSharedBehaviour(t *testing.T) {
	t.Parallel()
	m := openaitest.DefaultModel
	llmtest.RunAgentTests(t, llmtest.Harness[*openai.Error]{
		Name: "openai-compatible",
		Setup: func(t *testing.T, s llmtest.Settings) (*llmtest.Server, timmy.Agent) {
			b := setup(t, func(c *openai.Config) {
				c.MaxRetries, c.Timeout = s.MaxRetries, s.Timeout
				if s.BaseURL != "" {
					c.BaseURL = s.BaseURL
				}
			})
			return b.srv.Server, b.agent
		},
		Attempts:    func(e *openai.Error) (int, int) { return e.StatusCode, e.Attempts },
		RateLimited: openaitest.RateLimited,
		ServerError: openaitest.ServerError,
		Truncated:   openaitest.Truncated,
		Malformed: []llmtest.Case{
			{Name: "prose", Reply: openaitest.Content(m, "Yes, I accept this request.", 10, 5), Msg: "openai-compatible: malformed evaluation: not a JSON object"},
			{Name: "prose around json", Reply: openaitest.Content(m, `Sure! {"accepted":true,"reason":"ok"}`, 10, 5), Msg: "openai-compatible: malformed evaluation: not a JSON object"},
			{Name: "fence of another language", Reply: openaitest.Content(m, "```python\n{\"accepted\":true,\"reason\":\"ok\"}\n```", 10, 5), Msg: "openai-compatible: malformed evaluation: not a JSON object"},
			{Name: "accepted as a string", Reply: openaitest.Content(m, `{"accepted":"yes","reason":"ok"}`, 10, 5), Msg: "openai-compatible: malformed evaluation: accepted is not a boolean"},
			{Name: "missing reason", Reply: openaitest.Content(m, `{"accepted":true}`, 10, 5), Msg: "openai-compatible: malformed evaluation: want exactly the fields accepted and reason, got accepted"},
			{Name: "extra field", Reply: openaitest.Content(m, `{"accepted":true,"reason":"ok","score":1}`, 10, 5), Msg: "openai-compatible: malformed evaluation: want exactly the fields accepted and reason, got accepted, reason, score"},
			{Name: "empty reason", Reply: openaitest.Content(m, `{"accepted":true,"reason":""}`, 10, 5), Msg: "openai-compatible: malformed evaluation: reason is empty"},
			{Name: "empty content", Reply: openaitest.Content(m, ``, 10, 0), Msg: "openai-compatible: malformed evaluation: not a JSON object"},
			{Name: "no choices", Reply: openaitest.Reply{Body: `{"id":"x","object":"chat.completion","created":1,"model":"llama3.2","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1}}`}, Msg: "openai-compatible: response without choices"},
			{Name: "refusal", Reply: openaitest.Reply{Body: `{"id":"x","object":"chat.completion","created":1,"model":"llama3.2","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}`}, Msg: "openai-compatible: the model refused the request"},
			{Name: "not JSON at all", Reply: openaitest.Reply{Body: `<html>502 Bad Gateway</html>`}, Msg: "openai-compatible: malformed response"},
		},
	})
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
