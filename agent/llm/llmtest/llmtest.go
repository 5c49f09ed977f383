// Package llmtest is the plumbing every fake LLM API shares (anthropictest,
// openaitest): an httptest server that numbers requests, serves scripted
// replies before its defaults, can hang or cut off a reply, and records
// every exchange with the usage it reported, so that a job's ledger can be
// checked against it. What differs between APIs (how a request is read
// and checked, how answers, usage and errors look on the wire) is the
// provider fake's Protocol.
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
)

// Kind says which agent call a request was.
type Kind string

// The kinds of request. Each Protocol tells them apart by what the agent
// sends: a forced tool, or a JSON response format.
const (
	Evaluate Kind = "evaluate"
	Work     Kind = "work"
)

// Default answers every fake starts with, until a test changes them.
const (
	DefaultReason   = "The request is a clear task that fits in one answer."
	DefaultWorkText = "This is the fake agent's work."
)

// Exchange is one request a fake received and what it answered. Fields an
// API has no counterpart for stay empty.
type Exchange struct {
	Kind  Kind
	Model string
	// MaxTokens is the request's output cap (max_tokens, or
	// max_completion_tokens); 0 when absent.
	MaxTokens int64
	// System is the system prompt; Request is the last user message's
	// text, as sent (the agent wraps evaluations in <request> tags).
	System  string
	Request string
	// Authorization is the header as received; OpenAI-compatible servers
	// take their key there.
	Authorization string
	// Tool is the tool an evaluation was forced to call (Anthropic's
	// tool_choice).
	Tool string
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

// Hang is a request that is never answered.
func Hang() Reply { return Reply{Hang: true} }

// Protocol is a provider fake's wire format: what Server needs to read
// requests and to answer them the way the real API would.
type Protocol interface {
	// Read parses and checks a request in the order the real API does. It
	// returns the exchange to record and, for a request the API would
	// refuse, the error reply it would send; nil means the request is
	// valid.
	Read(r *http.Request, body []byte) (Exchange, *Reply)
	// Evaluation renders the default answer to a valid evaluation ex, the
	// seq-th request, carrying decision, the accept/reject JSON object.
	Evaluation(ex Exchange, seq int, decision string, inputTokens, outputTokens int64) string
	// Work renders the default answer to valid work ex. capped says the
	// output was cut to ex.MaxTokens, which the API reports in its stop or
	// finish reason.
	Work(ex Exchange, text string, inputTokens, outputTokens int64, capped bool) string
	// Usage reads the usage a 200 body reports; ok is false when it
	// reports none.
	Usage(body string) (inputTokens, outputTokens int64, ok bool)
}

// Options are how a fake's server differs beyond its Protocol.
type Options struct {
	// Path is appended to the test server's address to make Server.URL,
	// for APIs whose base URL has one (OpenAI-compatible servers' /v1).
	Path string
	// RequestIDHeader names the header each answer numbers the request in.
	RequestIDHeader string
	// EvalInputTokens and the rest are the default answers' usage; the
	// default texts are DefaultReason and DefaultWorkText.
	EvalInputTokens, EvalOutputTokens int64
	WorkInputTokens, WorkOutputTokens int64
}

// Server is a fake LLM API, made by a provider fake's New, which embeds
// it. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give the agent (Config.BaseURL).
	URL string

	proto     Protocol
	requestID string
	srv       *httptest.Server
	quit      chan struct{}
	mu        sync.Mutex
	seq       int
	queue     []Reply
	decision  string // the accept/reject JSON object
	evalIn    int64
	evalOut   int64
	workText  string
	workIn    int64
	workOut   int64
	exchanges []Exchange
}

// New starts a fake speaking proto that accepts everything, and stops it
// when the test ends.
func New(t testing.TB, proto Protocol, o Options) *Server {
	t.Helper()
	s := &Server{
		proto:     proto,
		requestID: o.RequestIDHeader,
		quit:      make(chan struct{}),
		decision:  DecisionJSON(true, DefaultReason),
		evalIn:    o.EvalInputTokens,
		evalOut:   o.EvalOutputTokens,
		workText:  DefaultWorkText,
		workIn:    o.WorkInputTokens,
		workOut:   o.WorkOutputTokens,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL + o.Path
	t.Cleanup(func() {
		close(s.quit)
		s.srv.Close()
	})
	return s
}

// DecisionJSON renders an evaluation's decision, the object the agents
// parse strictly.
func DecisionJSON(accepted bool, reason string) string {
	b, _ := json.Marshal(map[string]any{"accepted": accepted, "reason": reason})
	return string(b)
}

// Accept makes evaluations accept, with reason.
func (s *Server) Accept(reason string) { s.setDecision(DecisionJSON(true, reason)) }

// Reject makes evaluations reject, with reason.
func (s *Server) Reject(reason string) { s.setDecision(DecisionJSON(false, reason)) }

func (s *Server) setDecision(decision string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decision = decision
}

// EvalUsage sets the usage evaluations report.
func (s *Server) EvalUsage(inputTokens, outputTokens int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evalIn, s.evalOut = inputTokens, outputTokens
}

// WorkReply sets the text and usage of work answers. A request whose
// output cap is below outputTokens is answered as the API would: output
// capped, with the API's stop reason for it.
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

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	w.Header().Set(s.requestID, fmt.Sprintf("req_fake_%03d", seq))

	body, _ := io.ReadAll(r.Body)
	ex, fail := s.proto.Read(r, body)
	ex.Authorization = r.Header.Get("Authorization")
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
		reply = Reply{Body: s.proto.Evaluation(ex, seq, s.decision, s.evalIn, s.evalOut)}
	default:
		out, capped := s.workOut, false
		if ex.MaxTokens > 0 && out > ex.MaxTokens {
			out, capped = ex.MaxTokens, true
		}
		reply = Reply{Body: s.proto.Work(ex, s.workText, s.workIn, out, capped)}
	}
	s.mu.Unlock()
	s.serve(w, r, ex, reply)
}

// serve writes reply and records the exchange.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, ex Exchange, reply Reply) {
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	if !reply.Hang && !reply.Truncate {
		ex.Status = status
		if in, out, ok := s.proto.Usage(reply.Body); ok && status == http.StatusOK {
			ex.Usage = timmy.Usage{Model: ex.Model, InputTokens: in, OutputTokens: out}
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

// Text flattens a message's content, which both APIs send either as a
// string or as a list of typed blocks (parts), to its text.
func Text(raw json.RawMessage) string {
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

// RequireAgentError checks that err is an agent's caller-safe error with
// message msg, coded as a backend failure for the HTTP layer and the job,
// and returns it as the provider's error type E for its own fields.
func RequireAgentError[E error](t testing.TB, err error, msg string) E {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, msg, err.Error())
	require.Equal(t, timmy.EUNAVAILABLE, timmy.ErrorCode(err))
	require.Equal(t, msg, timmy.ErrorMessage(err))
	var e E
	require.ErrorAs(t, err, &e)
	return e
}
