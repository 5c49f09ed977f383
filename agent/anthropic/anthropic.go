// Package anthropic is the timmy.Agent backed by Anthropic's Messages API,
// through the official anthropic-sdk-go. A small, cheap model evaluates each
// request and a stronger one does the work; both calls report the tokens the
// API billed, which become the job's cost ledger.
//
// Retries, backoff, error classification and the decision's strict parsing
// are shared with the other agents through package llm; this package keeps
// what is Anthropic's own: the Messages API calls, the forced decide tool,
// the API's error body and the statuses it treats specially.
package anthropic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/llm"
)

var _ timmy.Agent = (*Agent)(nil)

// Defaults for Config. Each is documented with its env var in
// the README (Configuration: Agents and pricing).
const (
	DefaultBaseURL = "https://api.anthropic.com"
	// DefaultEvalModel is a current Haiku: deciding accept/reject needs
	// little, and every evaluation is paid by a small fixed fee.
	DefaultEvalModel = "claude-haiku-4-5"
	// DefaultWorkModel is a current Sonnet, for the work buyers pay for.
	DefaultWorkModel = "claude-sonnet-4-5"
)

// Defaults for the limits every agent shares, restated here so that
// callers configuring this agent need not import package llm; see there
// for why each is what it is.
const (
	DefaultTimeout         = llm.DefaultTimeout
	DefaultMaxRetries      = llm.DefaultMaxRetries
	DefaultRetryBaseDelay  = llm.DefaultRetryBaseDelay
	DefaultRetryMaxDelay   = llm.DefaultRetryMaxDelay
	DefaultMaxOutputTokens = llm.DefaultMaxOutputTokens
	MaxRetriesLimit        = llm.MaxRetriesLimit
)

// name starts every message, as in "anthropic: overloaded (529)".
const name = "anthropic"

// evalMaxTokens is room for the decide tool call with a sentence of reason.
const evalMaxTokens = 512

// decideTool is the tool the evaluation is forced to call.
const decideTool = "decide"

// Config is the agent's settings. Zero durations, models, base URL and
// output cap take the defaults above; MaxRetries is taken literally, so
// zero means a single attempt (start from DefaultConfig for the defaults).
type Config struct {
	// APIKey is the Anthropic API key. It is required and is only ever
	// sent in the x-api-key header.
	APIKey string
	// BaseURL is the API's address; tests point it at a fake.
	BaseURL string
	// EvalModel decides whether to take a request; WorkModel does it.
	EvalModel string
	WorkModel string
	// Timeout bounds each attempt.
	Timeout time.Duration
	// MaxRetries is how many times a transient failure (429, 529, 5xx, a
	// timeout, a dropped connection) is retried.
	MaxRetries int
	// RetryBaseDelay doubles with each retry, up to RetryMaxDelay, which
	// also caps a server's Retry-After.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// MaxOutputTokens caps the work's answer. A caller may ask for less
	// through ExecuteOptions, never for more.
	MaxOutputTokens int64
	// HTTPClient makes the requests; nil means a plain client.
	HTTPClient *http.Client
}

// DefaultConfig returns the defaults, with apiKey.
func DefaultConfig(apiKey string) Config {
	return Config{
		APIKey:          apiKey,
		BaseURL:         DefaultBaseURL,
		EvalModel:       DefaultEvalModel,
		WorkModel:       DefaultWorkModel,
		Timeout:         DefaultTimeout,
		MaxRetries:      DefaultMaxRetries,
		RetryBaseDelay:  DefaultRetryBaseDelay,
		RetryMaxDelay:   DefaultRetryMaxDelay,
		MaxOutputTokens: DefaultMaxOutputTokens,
	}
}

// Agent evaluates and executes requests with Claude. It is safe for
// concurrent use.
type Agent struct {
	cfg    Config
	client sdk.Client
	// call holds the checked limits, with their defaults filled in, and
	// makes every request under them.
	call llm.Caller
}

// New checks cfg, fills its defaults and returns the agent.
func New(cfg Config) (*Agent, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("anthropic: an API key is required")
	}
	limits, err := cfg.limits().Normalize()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.EvalModel == "" {
		cfg.EvalModel = DefaultEvalModel
	}
	if cfg.WorkModel == "" {
		cfg.WorkModel = DefaultWorkModel
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	client := sdk.NewClient(
		// Configuration comes from Timmy's env reader alone, not from
		// whatever ANTHROPIC_* variables the SDK would pick up itself.
		option.WithoutEnvironmentDefaults(),
		option.WithAPIKey(cfg.APIKey),
		option.WithBaseURL(cfg.BaseURL),
		option.WithHTTPClient(httpClient),
		option.WithMaxRetries(0),
	)
	call := llm.Caller{Name: name, APIKey: cfg.APIKey, Limits: limits, Classify: classify, Final: final}
	return &Agent{cfg: cfg, client: client, call: call}, nil
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

// evalSystemPrompt is the shared screening policy, answered through the
// decide tool.
const evalSystemPrompt = llm.ScreeningPrompt + `

Always answer by calling the decide tool once, with accepted (true or false) and reason: one short sentence to the buyer saying why.`

const workSystemPrompt = llm.WorkPrompt

// Evaluate asks the evaluation model to accept or reject the request, by
// forcing it to call the decide tool, and reads the call strictly: a
// missing or malformed decision is an error, never an acceptance.
func (a *Agent) Evaluate(ctx context.Context, request string) (timmy.Evaluation, error) {
	params := sdk.MessageNewParams{
		Model:       sdk.Model(a.cfg.EvalModel),
		MaxTokens:   evalMaxTokens,
		Temperature: sdk.Float(0),
		System:      []sdk.TextBlockParam{{Text: evalSystemPrompt}},
		Messages: []sdk.MessageParam{
			sdk.NewUserMessage(sdk.NewTextBlock(llm.WrapRequest(request))),
		},
		Tools: []sdk.ToolUnionParam{{OfTool: &sdk.ToolParam{
			Name:        decideTool,
			Description: sdk.String("Record whether Timmy takes the request, and why."),
			InputSchema: sdk.ToolInputSchemaParam{
				Properties: map[string]any{
					"accepted": map[string]any{"type": "boolean", "description": "true to take the request, false to reject it"},
					"reason":   map[string]any{"type": "string", "description": "one short sentence to the buyer explaining the decision"},
				},
				Required:    []string{"accepted", "reason"},
				ExtraFields: map[string]any{"additionalProperties": false},
			},
		}}},
		ToolChoice: sdk.ToolChoiceUnionParam{OfTool: &sdk.ToolChoiceToolParam{
			Name:                   decideTool,
			DisableParallelToolUse: sdk.Bool(true),
		}},
	}
	msg, err := a.send(ctx, "evaluate", params)
	if err != nil {
		return timmy.Evaluation{}, err
	}
	usage, err := a.usage(msg, a.cfg.EvalModel)
	if err != nil {
		return timmy.Evaluation{}, err
	}
	var calls []sdk.ContentBlockUnion
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			calls = append(calls, b)
		}
	}
	switch {
	case len(calls) == 0:
		return timmy.Evaluation{}, malformed("evaluation without a decide tool call (stop_reason %q)", msg.StopReason)
	case len(calls) > 1:
		return timmy.Evaluation{}, malformed("evaluation with %d tool calls, want one", len(calls))
	case calls[0].Name != decideTool:
		return timmy.Evaluation{}, malformed("evaluation called tool %q, want %q", llm.Shorten(calls[0].Name, 40), decideTool)
	}
	accepted, reason, err := llm.ParseDecision(calls[0].Input)
	if err != nil {
		return timmy.Evaluation{}, malformed("malformed evaluation: %v", err)
	}
	return timmy.Evaluation{Accepted: accepted, Reason: reason, Usage: usage}, nil
}

// Execute does the work with the work model and returns its text and the
// tokens billed. opts.MaxOutputTokens lowers the output cap (the demo uses
// this); it cannot raise it above Config.MaxOutputTokens.
func (a *Agent) Execute(ctx context.Context, request string, opts timmy.ExecuteOptions) (timmy.WorkResult, error) {
	params := sdk.MessageNewParams{
		Model:     sdk.Model(a.cfg.WorkModel),
		MaxTokens: a.call.Limits.OutputCap(opts.MaxOutputTokens),
		System:    []sdk.TextBlockParam{{Text: workSystemPrompt}},
		Messages:  []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock(request))},
	}
	msg, err := a.send(ctx, "execute", params)
	if err != nil {
		return timmy.WorkResult{}, err
	}
	usage, err := a.usage(msg, a.cfg.WorkModel)
	if err != nil {
		return timmy.WorkResult{}, err
	}
	var text strings.Builder
	for _, b := range msg.Content {
		if b.Type == "text" {
			text.WriteString(b.Text)
		}
	}
	if strings.TrimSpace(text.String()) == "" {
		if msg.StopReason == sdk.StopReasonRefusal {
			return timmy.WorkResult{}, malformed("the model refused the request")
		}
		return timmy.WorkResult{}, malformed("empty answer (stop_reason %q)", msg.StopReason)
	}
	return timmy.WorkResult{Text: text.String(), Usage: usage}, nil
}

// usage reads the billed tokens. The API always sends them, so a response
// without them is malformed: the ledger must never show invented numbers.
// Cache reads and writes count as input, since they are billed as such.
// The model is the one asked for, which is the name the rates are keyed
// by, rather than the dated snapshot the API may report.
func (a *Agent) usage(msg *sdk.Message, model string) (timmy.Usage, error) {
	u := msg.Usage
	if !u.JSON.InputTokens.Valid() || !u.JSON.OutputTokens.Valid() {
		return timmy.Usage{}, malformed("response without token usage")
	}
	in := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	if in < 0 || u.OutputTokens < 0 {
		return timmy.Usage{}, malformed("negative token usage")
	}
	return timmy.Usage{Model: model, InputTokens: in, OutputTokens: u.OutputTokens}, nil
}

func malformed(format string, args ...any) *Error {
	return &Error{msg: name + ": " + fmt.Sprintf(format, args...)}
}

// send makes the call, with a timeout per attempt and bounded retries with
// backoff on transient failures. op names the call in wrapped errors.
func (a *Agent) send(ctx context.Context, op string, params sdk.MessageNewParams) (*sdk.Message, error) {
	return llm.Call(ctx, a.call, op, func(ctx context.Context) (*sdk.Message, *http.Response, error) {
		var res *http.Response
		msg, err := a.client.Messages.New(ctx, params, option.WithResponseInto(&res))
		return msg, res, err
	})
}
