// Package anthropictest is a fake Anthropic Messages API for tests: an
// httptest server that checks requests the way the real API does
// (x-api-key, anthropic-version, model, max_tokens, messages, tool_choice)
// and answers in its documented wire format, including its error shape
//
//	{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_…"}
//
// By default it accepts every request and answers work with fixed text and
// usage. A test changes those defaults (Accept, Reject, WorkReply), scripts
// one-off replies (Enqueue with Overloaded, RateLimited, Truncated, …), and
// reads back what it was sent and the usage it returned (Exchanges,
// LastUsage), so that a ledger can be checked against it:
//
//	srv := anthropictest.New(t)
//	srv.Accept("Clear task.")
//	srv.WorkReply("Here you go.", 120, 340)
//	agent := srv.NewAgent(t)
//	… run the job …
//	require.Equal(t, srv.LastUsage(anthropictest.Work).OutputTokens, ledger.ActualOutputTokens)
//
// The server plumbing (scripting, recording, hanging and cut-off replies)
// is llmtest's, shared with the OpenAI-compatible fake; this package is
// the Messages API's wire format.
package anthropictest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/timmyhq/timmy/agent/anthropic"
	"github.com/timmyhq/timmy/agent/llm/llmtest"
)

// APIKey is the key the fake accepts unless a test changes Server.APIKey.
const APIKey = "sk-ant-test-0123456789"

// Kind says which agent call a request was: an evaluation forces the
// decide tool; work has no tools.
type Kind = llmtest.Kind

// The kinds of request.
const (
	Evaluate = llmtest.Evaluate
	Work     = llmtest.Work
)

// Default answers, until a test changes them.
const (
	DefaultReason          = llmtest.DefaultReason
	DefaultWorkText        = llmtest.DefaultWorkText
	DefaultEvalInputTokens = 180
	DefaultEvalOutput      = 40
	DefaultWorkInputTokens = 120
	DefaultWorkOutput      = 350
)

// Exchange is one request the fake received and what it answered.
type Exchange = llmtest.Exchange

// Reply is a scripted one-off answer, served to the next valid request
// instead of the default.
type Reply = llmtest.Reply

// Server is the fake API: llmtest's server, which scripts and records,
// speaking the Messages API. Its methods are safe for concurrent use.
type Server struct {
	*llmtest.Server
	// APIKey is the key requests must carry in x-api-key. Set it before
	// the first request.
	APIKey string
}

// New starts a fake that accepts everything, and stops it when the test
// ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{APIKey: APIKey}
	s.Server = llmtest.New(t, messagesAPI{s}, llmtest.Options{
		RequestIDHeader:  "request-id",
		EvalInputTokens:  DefaultEvalInputTokens,
		EvalOutputTokens: DefaultEvalOutput,
		WorkInputTokens:  DefaultWorkInputTokens,
		WorkOutputTokens: DefaultWorkOutput,
	})
	return s
}

// Config returns an agent config for this fake: its URL and key, default
// models, a short timeout and near-zero backoff, so retries cost the test
// milliseconds.
func (s *Server) Config() anthropic.Config {
	return anthropic.Config{
		APIKey:         s.APIKey,
		BaseURL:        s.URL,
		EvalModel:      anthropic.DefaultEvalModel,
		WorkModel:      anthropic.DefaultWorkModel,
		Timeout:        5 * time.Second,
		MaxRetries:     anthropic.DefaultMaxRetries,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  5 * time.Millisecond,
	}
}

// NewAgent returns an agent on Config.
func (s *Server) NewAgent(t testing.TB) *anthropic.Agent {
	t.Helper()
	a, err := anthropic.New(s.Config())
	if err != nil {
		t.Fatalf("anthropictest: new agent: %v", err)
	}
	return a
}

// Error is a reply in the API's documented error shape.
func Error(status int, errType, message string) Reply {
	body, _ := json.Marshal(map[string]any{
		"type":       "error",
		"error":      map[string]string{"type": errType, "message": message},
		"request_id": "req_fake_error",
	})
	return Reply{Status: status, Body: string(body)}
}

// Overloaded is the API's 529.
func Overloaded() Reply { return Error(529, "overloaded_error", "Overloaded") }

// RateLimited is the API's 429, with a retry-after of 0 seconds so tests
// do not wait.
func RateLimited() Reply {
	r := Error(http.StatusTooManyRequests, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
	r.Header = http.Header{"Retry-After": {"0"}}
	return r
}

// ServerError is the API's 500.
func ServerError() Reply {
	return Error(http.StatusInternalServerError, "api_error", "Internal server error")
}

// Unauthorized is the API's answer to a bad key.
func Unauthorized() Reply {
	return Error(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
}

// Truncated is a 200 whose connection is cut half-way through the body.
func Truncated() Reply {
	return Reply{Body: Message(anthropic.DefaultWorkModel, []any{TextBlock(DefaultWorkText)}, "end_turn", 10, 10), Truncate: true}
}

// Hang is a request that is never answered.
func Hang() Reply { return llmtest.Hang() }

// DecisionInput is a 200 evaluation whose decide tool input is the given
// raw JSON, for testing malformed decisions.
func DecisionInput(model, rawInput string) Reply {
	return Reply{Body: Message(model, []any{ToolUseBlock("toolu_fake_scripted", "decide", json.RawMessage(rawInput))}, "tool_use", DefaultEvalInputTokens, DefaultEvalOutput)}
}

// TextOnly is a 200 with a text block and no tool call, as a model that
// ignored the forced tool would answer.
func TextOnly(model, text string, inputTokens, outputTokens int64) Reply {
	return Reply{Body: Message(model, []any{TextBlock(text)}, "end_turn", inputTokens, outputTokens)}
}

// TextBlock is a text content block.
func TextBlock(text string) map[string]any { return map[string]any{"type": "text", "text": text} }

// ToolUseBlock is a tool_use content block.
func ToolUseBlock(id, name string, input json.RawMessage) map[string]any {
	return map[string]any{"type": "tool_use", "id": id, "name": name, "input": input}
}

// Message renders a Messages API response.
func Message(model string, content []any, stopReason string, inputTokens, outputTokens int64) string {
	body, _ := json.Marshal(map[string]any{
		"id":            "msg_fake",
		"type":          "message",
		"role":          "assistant",
		"model":         model,
		"content":       content,
		"stop_reason":   stopReason,
		"stop_sequence": nil,
		"usage": map[string]any{
			"input_tokens":                inputTokens,
			"output_tokens":               outputTokens,
			"cache_creation_input_tokens": 0,
			"cache_read_input_tokens":     0,
			"service_tier":                "standard",
		},
	})
	return string(body)
}

// messagesAPI is the Messages API's wire format, for llmtest. It reads the
// key from the Server, so that a test may change it after New.
type messagesAPI struct{ s *Server }

// request is the part of a Messages API request the fake reads.
type request struct {
	Model     *string         `json:"model"`
	MaxTokens *int64          `json:"max_tokens"`
	System    json.RawMessage `json:"system"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
	ToolChoice *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
}

// Read checks a request in the order the API does: route, auth, then the
// body. A request with a tool_choice is an evaluation.
func (p messagesAPI) Read(r *http.Request, body []byte) (Exchange, *Reply) {
	var req request
	jsonErr := json.Unmarshal(body, &req)
	ex := Exchange{Kind: Work}
	if req.Model != nil {
		ex.Model = *req.Model
	}
	if req.MaxTokens != nil {
		ex.MaxTokens = *req.MaxTokens
	}
	if req.ToolChoice != nil {
		ex.Kind, ex.Tool = Evaluate, req.ToolChoice.Name
	}
	ex.System = llmtest.Text(req.System)
	if len(req.Messages) > 0 {
		ex.Request = llmtest.Text(req.Messages[len(req.Messages)-1].Content)
	}

	var fail Reply
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v1/messages":
		fail = Error(http.StatusNotFound, "not_found_error", "Not found")
	case r.Header.Get("x-api-key") != p.s.APIKey:
		fail = Unauthorized()
	case r.Header.Get("anthropic-version") == "":
		fail = Error(http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
	case jsonErr != nil:
		fail = Error(http.StatusBadRequest, "invalid_request_error", "request body is not valid JSON")
	case req.Model == nil || *req.Model == "":
		fail = Error(http.StatusBadRequest, "invalid_request_error", "model: Field required")
	case req.MaxTokens == nil || *req.MaxTokens < 1:
		fail = Error(http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required")
	case len(req.Messages) == 0 || req.Messages[0].Role != "user":
		fail = Error(http.StatusBadRequest, "invalid_request_error", "messages: at least one message is required")
	case req.ToolChoice != nil && req.ToolChoice.Type == "tool" && !hasTool(req, req.ToolChoice.Name):
		fail = Error(http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("tool_choice.name: tool %q not found in tools", req.ToolChoice.Name))
	default:
		return ex, nil
	}
	return ex, &fail
}

func hasTool(req request, name string) bool {
	for _, t := range req.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// Evaluation answers with a call of the forced tool, its input the
// decision.
func (messagesAPI) Evaluation(ex Exchange, seq int, decision string, inputTokens, outputTokens int64) string {
	return Message(ex.Model,
		[]any{ToolUseBlock(fmt.Sprintf("toolu_fake_%03d", seq), ex.Tool, json.RawMessage(decision))},
		"tool_use", inputTokens, outputTokens)
}

// Work answers with a text block; capped output stops at "max_tokens".
func (messagesAPI) Work(ex Exchange, text string, inputTokens, outputTokens int64, capped bool) string {
	stop := "end_turn"
	if capped {
		stop = "max_tokens"
	}
	return Message(ex.Model, []any{TextBlock(text)}, stop, inputTokens, outputTokens)
}

// Usage reads usage.input_tokens and output_tokens; any JSON body counts
// as reporting them, zero when absent, as the real API always sends them.
func (messagesAPI) Usage(body string) (inputTokens, outputTokens int64, ok bool) {
	var m struct {
		Usage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal([]byte(body), &m) != nil {
		return 0, 0, false
	}
	return m.Usage.InputTokens, m.Usage.OutputTokens, true
}
