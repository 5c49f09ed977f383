// Package openai is the timmy.Agent for any server that speaks OpenAI's
// /v1/chat/completions: OpenAI itself, and the local servers Ollama
// (http://localhost:11434/v1), vLLM and llama.cpp. It uses the official
// openai-go SDK.
//
// The evaluation asks for response_format {"type":"json_object"}, which
// all of those servers support, and a system prompt demanding
// {"accepted": bool, "reason": string}; the answer is parsed strictly.
// Output is capped with max_tokens rather than max_completion_tokens,
// because the local servers understand the former.
//
// Retries, backoff, error classification and the decision's strict parsing
// are shared with the other agents through package llm; this package keeps
// what is the protocol's own: the chat completion calls, the error bodies
// the various servers send, and the leniencies local models need (a fenced
// decision, a leading think block, missing usage).
package openai

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/llm"
)

var _ timmy.Agent = (*Agent)(nil)

// Defaults for Config: the limits every agent shares, restated here so
// that callers configuring this agent need not import package llm (see
// there for why each is what it is). Each is documented with its env var
// in the README (Configuration: Agents and pricing). There is no default
// model: what a server can run is up to whoever runs it.
const (
	DefaultTimeout         = llm.DefaultTimeout
	DefaultMaxRetries      = llm.DefaultMaxRetries
	DefaultRetryBaseDelay  = llm.DefaultRetryBaseDelay
	DefaultRetryMaxDelay   = llm.DefaultRetryMaxDelay
	DefaultMaxOutputTokens = llm.DefaultMaxOutputTokens
	MaxRetriesLimit        = llm.MaxRetriesLimit
)

// evalMaxTokens is room for the JSON decision with a sentence of reason.
const evalMaxTokens = 512

// Config is the agent's settings. Zero durations and output cap take the
// defaults above, and an empty EvalModel takes WorkModel; MaxRetries is
// taken literally, so zero means a single attempt.
type Config struct {
	// BaseURL is the server's OpenAI-compatible root, ending in /v1, such
	// as http://localhost:11434/v1 for Ollama. Required.
	BaseURL string
	// APIKey is sent as a bearer token when set; local servers need none.
	APIKey string
	// WorkModel does the work and is required; EvalModel decides whether
	// to take a request and defaults to WorkModel.
	EvalModel string
	WorkModel string
	// Timeout bounds each attempt.
	Timeout time.Duration
	// MaxRetries is how many times a transient failure (429, 5xx, a
	// timeout, a dropped connection) is retried.
	MaxRetries int
	// RetryBaseDelay doubles with each retry, up to RetryMaxDelay, which
	// also caps a server's Retry-After.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// MaxOutputTokens caps the work's answer. A caller may ask for less
	// through ExecuteOptions, never for more.
	MaxOutputTokens int64
	// RequireUsage makes a response without usage an error. By default the
	// tokens are then estimated from the text (four bytes a token) and a
	// warning is logged, so that finished work is not thrown away over a
	// missing ledger line.
	RequireUsage bool
	// HTTPClient makes the requests; nil means a plain client.
	HTTPClient *http.Client
	// Logger receives the estimated-usage warning; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Agent evaluates and executes requests on an OpenAI-compatible server.
// It is safe for concurrent use.
type Agent struct {
	cfg  Config
	chat oai.ChatCompletionService
	log  *slog.Logger
	// call holds the checked limits, with their defaults filled in, and
	// makes every request under them.
	call llm.Caller
}

// New checks cfg, fills its defaults and returns the agent.
func New(cfg Config) (*Agent, error) {
	if strings.TrimSpace(cfg.BaseURL) == "" {
		return nil, errors.New("openai-compatible: a base URL is required")
	}
	if strings.TrimSpace(cfg.WorkModel) == "" {
		return nil, errors.New("openai-compatible: a work model is required")
	}
	limits, err := cfg.limits().Normalize()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cfg.EvalModel == "" {
		cfg.EvalModel = cfg.WorkModel
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	// The service is built from explicit options alone, so none of the
	// OPENAI_* variables the SDK's NewClient would read (organisation,
	// project, admin key, custom headers) leak into requests.
	opts := []option.RequestOption{
		option.WithBaseURL(cfg.BaseURL),
		option.WithHTTPClient(httpClient),
		option.WithMaxRetries(0),
	}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	call := llm.Caller{Name: name, APIKey: cfg.APIKey, Limits: limits, Classify: classify, Final: final}
	return &Agent{cfg: cfg, chat: oai.NewChatCompletionService(opts...), log: log, call: call}, nil
}

// limits are the settings of cfg that every agent shares.
func (c Config) limits() llm.Limits {
	return llm.Limits{
		Timeout:         c.Timeout,
		MaxRetries:      c.MaxRetries,
		RetryBaseDelay:  c.RetryBaseDelay,
		RetryMaxDelay:   c.RetryMaxDelay,
		MaxOutputTokens: c.MaxOutputTokens,
	}
}

// EvalModel names the model Evaluate uses.
func (a *Agent) EvalModel() string { return a.cfg.EvalModel }

// WorkModel names the model Execute uses, so the work can be priced before
// it runs.
func (a *Agent) WorkModel() string { return a.cfg.WorkModel }

// evalSystemPrompt is the shared screening policy, answered as a bare JSON
// object.
const evalSystemPrompt = llm.ScreeningPrompt + `

Answer with only a JSON object of exactly this shape, and nothing else:
{"accepted": true or false, "reason": "one short sentence to the buyer saying why"}`

const workSystemPrompt = llm.WorkPrompt

// Evaluate asks the evaluation model for a JSON decision and reads it
// strictly: anything but {"accepted": bool, "reason": "…"} (optionally in a
// ```json fence) is an error, never an acceptance.
func (a *Agent) Evaluate(ctx context.Context, request string) (timmy.Evaluation, error) {
	user := llm.WrapRequest(request)
	params := oai.ChatCompletionNewParams{
		Model: a.cfg.EvalModel,
		Messages: []oai.ChatCompletionMessageParamUnion{
			oai.SystemMessage(evalSystemPrompt),
			oai.UserMessage(user),
		},
		MaxTokens:   oai.Int(evalMaxTokens),
		Temperature: oai.Float(0),
		ResponseFormat: oai.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONObject: &shared.ResponseFormatJSONObjectParam{},
		},
	}
	resp, err := a.send(ctx, "evaluate", params)
	if err != nil {
		return timmy.Evaluation{}, err
	}
	content, err := answer(resp)
	if err != nil {
		return timmy.Evaluation{}, err
	}
	accepted, reason, err := llm.ParseDecision([]byte(unfence(content)))
	if err != nil {
		return timmy.Evaluation{}, malformed("malformed evaluation: %v", err)
	}
	usage, err := a.usage(resp, a.cfg.EvalModel, evalSystemPrompt+user, content)
	if err != nil {
		return timmy.Evaluation{}, err
	}
	return timmy.Evaluation{Accepted: accepted, Reason: reason, Usage: usage}, nil
}

// Execute does the work with the work model and returns its text and the
// tokens used. opts.MaxOutputTokens lowers the output cap (the demo uses
// this); it cannot raise it above Config.MaxOutputTokens.
func (a *Agent) Execute(ctx context.Context, request string, opts timmy.ExecuteOptions) (timmy.WorkResult, error) {
	params := oai.ChatCompletionNewParams{
		Model: a.cfg.WorkModel,
		Messages: []oai.ChatCompletionMessageParamUnion{
			oai.SystemMessage(workSystemPrompt),
			oai.UserMessage(request),
		},
		MaxTokens: oai.Int(a.call.Limits.OutputCap(opts.MaxOutputTokens)),
	}
	resp, err := a.send(ctx, "execute", params)
	if err != nil {
		return timmy.WorkResult{}, err
	}
	content, err := answer(resp)
	if err != nil {
		return timmy.WorkResult{}, err
	}
	text := stripThinking(content)
	if strings.TrimSpace(text) == "" {
		return timmy.WorkResult{}, malformed("empty answer (finish_reason %q)", resp.Choices[0].FinishReason)
	}
	usage, err := a.usage(resp, a.cfg.WorkModel, workSystemPrompt+request, content)
	if err != nil {
		return timmy.WorkResult{}, err
	}
	return timmy.WorkResult{Text: text, Usage: usage}, nil
}

// answer is the first choice's content.
func answer(resp *oai.ChatCompletion) (string, error) {
	if len(resp.Choices) == 0 {
		return "", malformed("response without choices")
	}
	msg := resp.Choices[0].Message
	if msg.Refusal != "" {
		return "", malformed("the model refused the request")
	}
	return msg.Content, nil
}

// unfence unwraps a ```json … ``` (or bare ```) block, which some local
// models emit even when asked for a JSON object; anything else is returned
// unchanged for the strict parser to judge.
func unfence(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "```") || !strings.HasSuffix(s, "```") || len(s) < 6 {
		return s
	}
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return s
	}
	if lang := strings.TrimSpace(s[3:nl]); lang != "" && !strings.EqualFold(lang, "json") {
		return s
	}
	return strings.TrimSpace(strings.TrimSuffix(s[nl+1:], "```"))
}

// stripThinking drops a leading <think>…</think> block, which reasoning
// models served by Ollama or vLLM put before the answer: the buyer paid
// for the answer. The tokens still count in the usage.
func stripThinking(s string) string {
	t := strings.TrimLeft(s, " \t\r\n")
	if !strings.HasPrefix(t, "<think>") {
		return s
	}
	end := strings.Index(t, "</think>")
	if end < 0 {
		return s
	}
	return strings.TrimLeft(t[end+len("</think>"):], " \t\r\n")
}

// usage reads the tokens the server counted. A server that sends none
// (some proxies strip it) gets an estimate of four bytes a token from the
// prompt and the answer, with a warning, unless RequireUsage is set. The
// model is the one asked for, which is the name the rates are keyed by.
func (a *Agent) usage(resp *oai.ChatCompletion, model, prompt, content string) (timmy.Usage, error) {
	u := resp.Usage
	if resp.JSON.Usage.Valid() && u.JSON.PromptTokens.Valid() && u.JSON.CompletionTokens.Valid() {
		if u.PromptTokens < 0 || u.CompletionTokens < 0 {
			return timmy.Usage{}, malformed("negative token usage")
		}
		return timmy.Usage{Model: model, InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}, nil
	}
	if a.cfg.RequireUsage {
		return timmy.Usage{}, malformed("response without token usage")
	}
	est := timmy.Usage{Model: model, InputTokens: EstimateTokens(prompt), OutputTokens: EstimateTokens(content), Estimated: true}
	a.log.Warn("openai-compatible server sent no usage; tokens estimated from text",
		"model", model, "input_tokens", est.InputTokens, "output_tokens", est.OutputTokens)
	return est, nil
}

// EstimateTokens guesses a text's tokens as one per four bytes, rounded
// up: the usual rule for English, erring high for other scripts.
func EstimateTokens(text string) int64 { return (int64(len(text)) + 3) / 4 }

func malformed(format string, args ...any) *Error {
	return &Error{msg: prefix + fmt.Sprintf(format, args...)}
}

// send makes the call, with a timeout per attempt and bounded retries with
// backoff on transient failures. op names the call in wrapped errors.
func (a *Agent) send(ctx context.Context, op string, params oai.ChatCompletionNewParams) (*oai.ChatCompletion, error) {
	return llm.Call(ctx, a.call, op, func(ctx context.Context) (*oai.ChatCompletion, *http.Response, error) {
		var res *http.Response
		resp, err := a.chat.New(ctx, params, option.WithResponseInto(&res))
		return resp, res, err
	})
}
