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
package openaitest

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/openai"
)

// Kind says which agent call a request was.
type Kind string

// The kinds of request: an evaluation asks for a JSON object; work does
// not.
const (
	Evaluate Kind = "evaluate"
	Work     Kind = "work"
)

// Defaults, until a test changes them.
const (
	DefaultModel           = "llama3.2"
	DefaultReason          = "The request is a clear task that fits in one answer."
	DefaultWorkText        = "This is the fake agent's work."
	DefaultEvalInputTokens = 160
	DefaultEvalOutput      = 25
	DefaultWorkInputTokens = 110
	DefaultWorkOutput      = 300
)

// Exchange is one request the fake received and what it answered.
type Exchange struct {
	Kind      Kind
	Model     string
	MaxTokens int64 // max_tokens, or max_completion_tokens; 0 when absent
	// System is the system message; Request is the last user message, as
	// sent (the agent wraps evaluations in <request> tags).
	System  string
	Request string
	// Authorization is the header as received.
	Authorization string
	// Status is the HTTP status answered; 0 for a hung or cut-off reply.
	Status int
	// Usage is the usage the response reported, with Model set to the
	// requested model; zero for errors and for replies without usage.
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

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give the agent (Config.BaseURL); it ends in
	// /v1, like Ollama's http://localhost:11434/v1.
	URL string
	// APIKey, when set, is the bearer token every request must carry; the
	// default "" accepts requests without one, as local servers do.
	APIKey string

	srv  *httptest.Server
	quit chan struct{}

	mu        sync.Mutex
	seq       int
	queue     []Reply
	decision  string
	evalIn    int64
	evalOut   int64
	workText  string
	workIn    int64
	workOut   int64
	omitUsage bool
	exchanges []Exchange
}

// New starts a fake that accepts everything, and stops it when the test
// ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		quit:     make(chan struct{}),
		evalIn:   DefaultEvalInputTokens,
		evalOut:  DefaultEvalOutput,
		workText: DefaultWorkText,
		workIn:   DefaultWorkInputTokens,
		workOut:  DefaultWorkOutput,
	}
	s.decision = DecisionJSON(true, DefaultReason)
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL + "/v1"
	t.Cleanup(func() {
		close(s.quit)
		s.srv.Close()
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

// Accept makes evaluations accept, with reason.
func (s *Server) Accept(reason string) { s.setDecision(DecisionJSON(true, reason)) }

// Reject makes evaluations reject, with reason.
func (s *Server) Reject(reason string) { s.setDecision(DecisionJSON(false, reason)) }

func (s *Server) setDecision(content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decision = content
}

// EvalUsage sets the usage evaluations report.
func (s *Server) EvalUsage(promptTokens, completionTokens int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evalIn, s.evalOut = promptTokens, completionTokens
}

// WorkReply sets the text and usage of work answers. A request whose
// max_tokens is below completionTokens is answered as a server would:
// completion capped and finish_reason "length".
func (s *Server) WorkReply(text string, promptTokens, completionTokens int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workText, s.workIn, s.workOut = text, promptTokens, completionTokens
}

// OmitUsage makes default answers leave out the usage object, as some
// proxies do.
func (s *Server) OmitUsage(omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omitUsage = omit
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
func Hang() Reply { return Reply{Hang: true} }

// Content is a 200 whose message content is the given text, with usage,
// for scripting malformed or fenced evaluations.
func Content(model, content string, promptTokens, completionTokens int64) Reply {
	return Reply{Body: Completion(model, content, "stop", promptTokens, completionTokens, true)}
}

// DecisionJSON renders an evaluation answer.
func DecisionJSON(accepted bool, reason string) string {
	b, _ := json.Marshal(map[string]any{"accepted": accepted, "reason": reason})
	return string(b)
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

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	w.Header().Set("x-request-id", fmt.Sprintf("req_fake_%03d", seq))

	body, _ := io.ReadAll(r.Body)
	var req request
	jsonErr := json.Unmarshal(body, &req)
	ex := Exchange{Kind: Work, Authorization: r.Header.Get("Authorization")}
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
			ex.System = text(m.Content)
		case "user":
			ex.Request = text(m.Content)
		}
	}

	var fail *Reply
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions":
		e := Error(http.StatusNotFound, "invalid_request_error", "unknown_url", fmt.Sprintf("Unknown request URL: %s %s", r.Method, r.URL.Path))
		fail = &e
	case s.APIKey != "" && ex.Authorization != "Bearer "+s.APIKey:
		e := Error(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: "+mask(strings.TrimPrefix(ex.Authorization, "Bearer ")))
		fail = &e
	case jsonErr != nil:
		e := Error(http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request.")
		fail = &e
	case req.Model == nil || *req.Model == "":
		e := Error(http.StatusBadRequest, "invalid_request_error", "", "you must provide a model parameter")
		fail = &e
	case len(req.Messages) == 0:
		e := Error(http.StatusBadRequest, "invalid_request_error", "", "[] is too short - 'messages'")
		fail = &e
	}
	if fail != nil {
		s.serve(w, r, ex, *fail)
		return
	}

	s.mu.Lock()
	var reply Reply
	switch {
	case len(s.queue) > 0:
		reply = s.queue[0]
		s.queue = s.queue[1:]
	case ex.Kind == Evaluate:
		reply = Reply{Body: Completion(ex.Model, s.decision, "stop", s.evalIn, s.evalOut, !s.omitUsage)}
	default:
		out, finish := s.workOut, "stop"
		if ex.MaxTokens > 0 && out > ex.MaxTokens {
			out, finish = ex.MaxTokens, "length"
		}
		reply = Reply{Body: Completion(ex.Model, s.workText, finish, s.workIn, out, !s.omitUsage)}
	}
	s.mu.Unlock()
	s.serve(w, r, ex, reply)
}

// mask shows a key the way OpenAI's 401 does: its ends only.
func mask(key string) string {
	if len(key) <= 8 {
		return "***"
	}
	return key[:3] + "***" + key[len(key)-4:]
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
		Usage *struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal([]byte(body), &m) != nil || m.Usage == nil {
		return timmy.Usage{}
	}
	return timmy.Usage{Model: model, InputTokens: m.Usage.PromptTokens, OutputTokens: m.Usage.CompletionTokens}
}

// text flattens a message content, which is either a string or a list of
// parts, to its text.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var out string
	for _, p := range parts {
		if p.Type == "text" {
			out += p.Text
		}
	}
	return out
}
