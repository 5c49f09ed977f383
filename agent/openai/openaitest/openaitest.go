// Package openaitest is a fake OpenAI-compatible server for tests: an
// httptest server for POST /v1/chat/completions that checks requests the
// way OpenAI, Ollama, vLLM and llama.cpp do (model, messages, an optional
// bearer key) and answers in the documented chat.completion format, with
// usage.prompt_tokens/completion_tokens, and OpenAI's error shape
//
//	{"error":{"message":"…","type":"…","param":null,"code":"…"}}
//
// By default it accepts every request (answering evaluations, which ask for
// response_format json_object, with {"accepted":true,"reason":…}) and
// answers work with fixed text and usage. A test changes those defaults
// (Accept, Reject, WorkReply, OmitUsage), scripts one-off replies (Enqueue
// with RateLimited, ServerError, Truncated, …), and reads back what it was
// sent and the usage it returned (Exchanges, LastUsage):
//
//	srv := openaitest.New(t)
//	srv.WorkReply("Here you go.", 120, 340)
//	agent := srv.NewAgent(t)
//	… run the job …
//	require.Equal(t, srv.LastUsage(openaitest.Work).OutputTokens, ledger.ActualOutputTokens)
//
// The server plumbing (scripting, recording, hanging and cut-off replies)
// is llmtest's, shared with the Anthropic fake; this package is the chat
// completions wire format.
package openaitest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/timmyhq/timmy/agent/llm/llmtest"
	"github.com/timmyhq/timmy/agent/openai"
)

// Kind says which agent call a request was: an evaluation asks for a JSON
// object; work does not.
type Kind = llmtest.Kind

// The kinds of request.
const (
	Evaluate = llmtest.Evaluate
	Work     = llmtest.Work
)

// Defaults, until a test changes them.
const (
	DefaultModel           = "llama3.2"
	DefaultReason          = llmtest.DefaultReason
	DefaultWorkText        = llmtest.DefaultWorkText
	DefaultEvalInputTokens = 160
	DefaultEvalOutput      = 25
	DefaultWorkInputTokens = 110
	DefaultWorkOutput      = 300
)

// Exchange is one request the fake received and what it answered; its
// Authorization is the bearer header as received.
type Exchange = llmtest.Exchange

// Reply is a scripted one-off answer, served to the next valid request
// instead of the default.
type Reply = llmtest.Reply

// Server is the fake: llmtest's server, which scripts and records,
// speaking chat completions. Its methods are safe for concurrent use.
type Server struct {
	// Server scripts and records. Its URL, the base URL to give the agent
	// (Config.BaseURL), ends in /v1, like Ollama's http://localhost:11434/v1.
	*llmtest.Server
	// APIKey, when set, is the bearer token every request must carry; the
	// default "" accepts requests without one, as local servers do.
	APIKey string

	omitUsage atomic.Bool
}

// New starts a fake that accepts everything, and stops it when the test
// ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	s.Server = llmtest.New(t, chatAPI{s}, llmtest.Options{
		Path:             "/v1",
		RequestIDHeader:  "x-request-id",
		EvalInputTokens:  DefaultEvalInputTokens,
		EvalOutputTokens: DefaultEvalOutput,
		WorkInputTokens:  DefaultWorkInputTokens,
		WorkOutputTokens: DefaultWorkOutput,
	})
	return s
}

// Config returns an agent config for this fake: its URL and key,
// DefaultModel for both calls, a short timeout, near-zero backoff and a
// silent logger.
func (s *Server) Config() openai.Config {
	return openai.Config{
		BaseURL:        s.URL,
		APIKey:         s.APIKey,
		EvalModel:      DefaultModel,
		WorkModel:      DefaultModel,
		Timeout:        5 * time.Second,
		MaxRetries:     openai.DefaultMaxRetries,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  5 * time.Millisecond,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// NewAgent returns an agent on Config.
func (s *Server) NewAgent(t testing.TB) *openai.Agent {
	t.Helper()
	a, err := openai.New(s.Config())
	if err != nil {
		t.Fatalf("openaitest: new agent: %v", err)
	}
	return a
}

// OmitUsage makes default answers leave out the usage object, as some
// proxies do.
func (s *Server) OmitUsage(omit bool) { s.omitUsage.Store(omit) }

// Error is a reply in OpenAI's documented error shape. An empty code is
// sent as null.
func Error(status int, errType, code, message string) Reply {
	var c any
	if code != "" {
		c = code
	}
	body, _ := json.Marshal(map[string]any{
		"error": map[string]any{"message": message, "type": errType, "param": nil, "code": c},
	})
	return Reply{Status: status, Body: string(body)}
}

// RateLimited is a 429 with a retry-after of 0 seconds so tests do not
// wait.
func RateLimited() Reply {
	r := Error(http.StatusTooManyRequests, "requests", "rate_limit_exceeded", "Rate limit reached for requests")
	r.Header = http.Header{"Retry-After": {"0"}}
	return r
}

// ServerError is a 500.
func ServerError() Reply {
	return Error(http.StatusInternalServerError, "server_error", "", "The server had an error while processing your request.")
}

// Loading is llama.cpp's 503 while a model loads; note its numeric code.
func Loading() Reply {
	return Reply{Status: http.StatusServiceUnavailable, Body: `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`}
}

// Truncated is a 200 whose connection is cut half-way through the body.
func Truncated() Reply {
	return Reply{Body: Completion(DefaultModel, DefaultWorkText, "stop", 10, 10, true), Truncate: true}
}

// Hang is a request that is never answered.
func Hang() Reply { return llmtest.Hang() }

// Content is a 200 whose message content is the given text, with usage,
// for scripting malformed or fenced evaluations.
func Content(model, content string, promptTokens, completionTokens int64) Reply {
	return Reply{Body: Completion(model, content, "stop", promptTokens, completionTokens, true)}
}

// DecisionJSON renders an evaluation answer.
func DecisionJSON(accepted bool, reason string) string {
	return llmtest.DecisionJSON(accepted, reason)
}

// Completion renders a chat.completion response; withUsage false leaves
// the usage object out.
func Completion(model, content, finishReason string, promptTokens, completionTokens int64, withUsage bool) string {
	resp := map[string]any{
		"id":                 "chatcmpl-fake",
		"object":             "chat.completion",
		"created":            1767225600,
		"model":              model,
		"system_fingerprint": "fp_fake",
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": content},
			"logprobs":      nil,
			"finish_reason": finishReason,
		}},
	}
	if withUsage {
		resp["usage"] = map[string]any{
			"prompt_tokens":     promptTokens,
			"completion_tokens": completionTokens,
			"total_tokens":      promptTokens + completionTokens,
		}
	}
	body, _ := json.Marshal(resp)
	return string(body)
}

// chatAPI is the chat completions wire format, for llmtest. It reads the
// key and the usage switch from the Server, so a test may change them
// after New.
type chatAPI struct{ s *Server }

// request is the part of a chat completion request the fake reads.
type request struct {
	Model               *string `json:"model"`
	MaxTokens           *int64  `json:"max_tokens"`
	MaxCompletionTokens *int64  `json:"max_completion_tokens"`
	Messages            []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

// Read checks a request the way the servers do: route, bearer key when one
// is set, then the body. A request for a JSON object is an evaluation.
func (p chatAPI) Read(r *http.Request, body []byte) (Exchange, *Reply) {
	var req request
	jsonErr := json.Unmarshal(body, &req)
	ex := Exchange{Kind: Work}
	if req.Model != nil {
		ex.Model = *req.Model
	}
	switch {
	case req.MaxTokens != nil:
		ex.MaxTokens = *req.MaxTokens
	case req.MaxCompletionTokens != nil:
		ex.MaxTokens = *req.MaxCompletionTokens
	}
	if req.ResponseFormat != nil && req.ResponseFormat.Type == "json_object" {
		ex.Kind = Evaluate
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			ex.System = llmtest.Text(m.Content)
		case "user":
			ex.Request = llmtest.Text(m.Content)
		}
	}

	auth := r.Header.Get("Authorization")
	var fail Reply
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions":
		fail = Error(http.StatusNotFound, "invalid_request_error", "unknown_url", fmt.Sprintf("Unknown request URL: %s %s", r.Method, r.URL.Path))
	case p.s.APIKey != "" && auth != "Bearer "+p.s.APIKey:
		fail = Error(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: "+mask(strings.TrimPrefix(auth, "Bearer ")))
	case jsonErr != nil:
		fail = Error(http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request.")
	case req.Model == nil || *req.Model == "":
		fail = Error(http.StatusBadRequest, "invalid_request_error", "", "you must provide a model parameter")
	case len(req.Messages) == 0:
		fail = Error(http.StatusBadRequest, "invalid_request_error", "", "[] is too short - 'messages'")
	default:
		return ex, nil
	}
	return ex, &fail
}

// mask shows a key the way OpenAI's 401 does: its ends only.
func mask(key string) string {
	if len(key) <= 8 {
		return "***"
	}
	return key[:3] + "***" + key[len(key)-4:]
}

// Evaluation answers with the decision as the message content.
func (p chatAPI) Evaluation(ex Exchange, _ int, decision string, promptTokens, completionTokens int64) string {
	return Completion(ex.Model, decision, "stop", promptTokens, completionTokens, !p.s.omitUsage.Load())
}

// Work answers with the text; capped output finishes with "length".
func (p chatAPI) Work(ex Exchange, text string, promptTokens, completionTokens int64, capped bool) string {
	finish := "stop"
	if capped {
		finish = "length"
	}
	return Completion(ex.Model, text, finish, promptTokens, completionTokens, !p.s.omitUsage.Load())
}

// Usage reads usage.prompt_tokens and completion_tokens, when the body
// has a usage object.
func (chatAPI) Usage(body string) (promptTokens, completionTokens int64, ok bool) {
	var m struct {
		Usage *struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal([]byte(body), &m) != nil || m.Usage == nil {
		return 0, 0, false
	}
	return m.Usage.PromptTokens, m.Usage.CompletionTokens, true
}
