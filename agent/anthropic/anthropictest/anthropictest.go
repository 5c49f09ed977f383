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
package anthropictest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/anthropic"
)

// APIKey is the key the fake accepts unless a test changes Server.APIKey.
const APIKey = "sk-ant-test-0123456789"

// Kind says which agent call a request was.
type Kind string

// The kinds of request: an evaluation forces the decide tool; work has no
// tools.
const (
	Evaluate Kind = "evaluate"
	Work     Kind = "work"
)

// Default answers, until a test changes them.
const (
	DefaultReason          = "The request is a clear task that fits in one answer."
	DefaultWorkText        = "This is the fake agent's work."
	DefaultEvalInputTokens = 180
	DefaultEvalOutput      = 40
	DefaultWorkInputTokens = 120
	DefaultWorkOutput      = 350
)

// Exchange is one request the fake received and what it answered.
type Exchange struct {
	Kind      Kind
	Model     string
	MaxTokens int64
	// System is the system prompt; Request is the user message's text, as
	// sent (the agent wraps evaluations in <request> tags).
	System  string
	Request string
	// Status is the HTTP status answered; 0 for a hung or cut-off reply.
	Status int
	// Usage is the usage the response reported, with Model set to the
	// requested model; zero for errors.
	Usage timmy.Usage
}

// Reply is a scripted one-off answer, served to the next valid request
// instead of the default.
type Reply struct {
	// Status defaults to 200.
	Status int
	// Body is sent as is, as application/json.
	Body string
	// Header is added to the response.
	Header http.Header
	// Truncate sends the headers (with the full Content-Length) and half
	// the body, then cuts the connection.
	Truncate bool
	// Hang never answers; the client's timeout ends the request.
	Hang bool
}

// Server is the fake API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give the agent (Config.BaseURL).
	URL string
	// APIKey is the key requests must carry in x-api-key. Set it before
	// the first request.
	APIKey string

	srv  *httptest.Server
	quit chan struct{}

	mu        sync.Mutex
	seq       int
	queue     []Reply
	decision  string // the decide tool's input JSON
	evalIn    int64
	evalOut   int64
	workText  string
	workIn    int64
	workOut   int64
	exchanges []Exchange
}

// New starts a fake that accepts everything, and stops it when the test
// ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		APIKey:   APIKey,
		quit:     make(chan struct{}),
		evalIn:   DefaultEvalInputTokens,
		evalOut:  DefaultEvalOutput,
		workText: DefaultWorkText,
		workIn:   DefaultWorkInputTokens,
		workOut:  DefaultWorkOutput,
	}
	s.decision = decisionJSON(true, DefaultReason)
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL
	t.Cleanup(func() {
		close(s.quit)
		s.srv.Close()
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

// Accept makes evaluations accept, with reason.
func (s *Server) Accept(reason string) { s.setDecision(decisionJSON(true, reason)) }

// Reject makes evaluations reject, with reason.
func (s *Server) Reject(reason string) { s.setDecision(decisionJSON(false, reason)) }

func (s *Server) setDecision(input string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decision = input
}

// EvalUsage sets the usage evaluations report.
func (s *Server) EvalUsage(inputTokens, outputTokens int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evalIn, s.evalOut = inputTokens, outputTokens
}

// WorkReply sets the text and usage of work answers. A request whose
// max_tokens is below outputTokens is answered as the API would: output
// capped at max_tokens and stop_reason "max_tokens".
func (s *Server) WorkReply(text string, inputTokens, outputTokens int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workText, s.workIn, s.workOut = text, inputTokens, outputTokens
}

// Enqueue scripts the next replies, served in order before the defaults
// resume.
func (s *Server) Enqueue(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, replies...)
}

// Exchanges returns every request received so far, in order.
func (s *Server) Exchanges() []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exchange(nil), s.exchanges...)
}

// Calls is how many requests were received, counting rejected ones.
func (s *Server) Calls() int { return len(s.Exchanges()) }

// LastUsage is the usage of the last successful exchange of kind, or the
// zero Usage when there was none.
func (s *Server) LastUsage(kind Kind) timmy.Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.exchanges) - 1; i >= 0; i-- {
		if ex := s.exchanges[i]; ex.Kind == kind && ex.Status == http.StatusOK {
			return ex.Usage
		}
	}
	return timmy.Usage{}
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
func Hang() Reply { return Reply{Hang: true} }

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

func decisionJSON(accepted bool, reason string) string {
	b, _ := json.Marshal(map[string]any{"accepted": accepted, "reason": reason})
	return string(b)
}

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

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	w.Header().Set("request-id", fmt.Sprintf("req_fake_%03d", seq))

	body, _ := io.ReadAll(r.Body)
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
		ex.Kind = Evaluate
	}
	ex.System = text(req.System)
	if len(req.Messages) > 0 {
		ex.Request = text(req.Messages[len(req.Messages)-1].Content)
	}

	// Checks in the order the API makes them: route, auth, then the body.
	var fail *Reply
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v1/messages":
		e := Error(http.StatusNotFound, "not_found_error", "Not found")
		fail = &e
	case r.Header.Get("x-api-key") != s.APIKey:
		e := Unauthorized()
		fail = &e
	case r.Header.Get("anthropic-version") == "":
		e := Error(http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		fail = &e
	case jsonErr != nil:
		e := Error(http.StatusBadRequest, "invalid_request_error", "request body is not valid JSON")
		fail = &e
	case req.Model == nil || *req.Model == "":
		e := Error(http.StatusBadRequest, "invalid_request_error", "model: Field required")
		fail = &e
	case req.MaxTokens == nil || *req.MaxTokens < 1:
		e := Error(http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required")
		fail = &e
	case len(req.Messages) == 0 || req.Messages[0].Role != "user":
		e := Error(http.StatusBadRequest, "invalid_request_error", "messages: at least one message is required")
		fail = &e
	case req.ToolChoice != nil && req.ToolChoice.Type == "tool" && !hasTool(req, req.ToolChoice.Name):
		e := Error(http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("tool_choice.name: tool %q not found in tools", req.ToolChoice.Name))
		fail = &e
	}
	if fail != nil {
		s.serve(w, r, ex, *fail)
		return
	}

	s.mu.Lock()
	var reply Reply
	if len(s.queue) > 0 {
		reply = s.queue[0]
		s.queue = s.queue[1:]
	} else if ex.Kind == Evaluate {
		reply = Reply{Body: Message(ex.Model,
			[]any{ToolUseBlock(fmt.Sprintf("toolu_fake_%03d", seq), req.ToolChoice.Name, json.RawMessage(s.decision))},
			"tool_use", s.evalIn, s.evalOut)}
	} else {
		out, stop := s.workOut, "end_turn"
		if out > ex.MaxTokens {
			out, stop = ex.MaxTokens, "max_tokens"
		}
		reply = Reply{Body: Message(ex.Model, []any{TextBlock(s.workText)}, stop, s.workIn, out)}
	}
	s.mu.Unlock()
	s.serve(w, r, ex, reply)
}

func hasTool(req request, name string) bool {
	for _, t := range req.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// serve writes reply and records the exchange.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, ex Exchange, reply Reply) {
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	if !reply.Hang && !reply.Truncate {
		ex.Status = status
		if status == http.StatusOK {
			ex.Usage = usageOf(reply.Body, ex.Model)
		}
	}
	s.mu.Lock()
	s.exchanges = append(s.exchanges, ex)
	s.mu.Unlock()

	if reply.Hang {
		select {
		case <-r.Context().Done():
		case <-s.quit:
		}
		return
	}
	for k, vs := range reply.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if reply.Truncate {
		w.Header().Set("Content-Length", strconv.Itoa(len(reply.Body)))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply.Body[:len(reply.Body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler) // cuts the connection without a log line
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reply.Body)
}

// usageOf reads the usage a response body reports.
func usageOf(body, model string) timmy.Usage {
	var m struct {
		Usage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal([]byte(body), &m) != nil {
		return timmy.Usage{}
	}
	return timmy.Usage{Model: model, InputTokens: m.Usage.InputTokens, OutputTokens: m.Usage.OutputTokens}
}

// text flattens a content field, which is either a string or a list of
// blocks, to its text.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var out string
	for _, b := range blocks {
		if b.Type == "text" {
			out += b.Text
		}
	}
	return out
}
