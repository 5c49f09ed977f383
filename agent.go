package timmy

import "context"

// Agent is the LLM that decides whether to take a request and then does the
// work. Both calls report the tokens they used, so buyers see real costs.
type Agent interface {
	// Evaluate decides whether to accept the request.
	Evaluate(ctx context.Context, request string) (Evaluation, error)
	// Execute does the work.
	Execute(ctx context.Context, request string, opts ExecuteOptions) (WorkResult, error)
	// WorkModel names the model Execute uses, so the work can be priced
	// before it runs.
	WorkModel() string
}

// Usage is the tokens one model call consumed.
type Usage struct {
	Model        string
	InputTokens  int64
	OutputTokens int64
	// Estimated is true when the backend reported no usage and the counts
	// were estimated from the text, so ledgers can say so.
	Estimated bool
}

// Evaluation is the agent's decision on a request.
type Evaluation struct {
	Accepted bool
	Reason   string
	Usage    Usage
}

// ExecuteOptions tunes one Execute call.
type ExecuteOptions struct {
	// MaxOutputTokens caps the answer's length; zero means the agent's own
	// default.
	MaxOutputTokens int64
}

// WorkResult is the agent's work on a request.
type WorkResult struct {
	Text  string
	Usage Usage
}
