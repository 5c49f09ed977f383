package openai

import "github.com/timmyhq/timmy/internal/env"

// ConfigFromEnv reads the agent's settings. Parse errors are recorded in e
// for the caller to report; the defaults stand in until then. The model,
// timeout, retry and output-cap variables are shared with the Anthropic
// agent, since only one agent runs at a time.
//
//	OPENAI_BASE_URL            required, e.g. http://localhost:11434/v1
//	OPENAI_API_KEY (or _FILE)  ""     optional for local servers
//	WORK_MODEL                 required, e.g. llama3.2
//	EVAL_MODEL                 WORK_MODEL
//	AGENT_TIMEOUT              2m     per attempt
//	AGENT_MAX_RETRIES          2      retries of 429/5xx/timeouts (0..10)
//	AGENT_RETRY_BASE_DELAY     500ms  doubled per retry
//	AGENT_RETRY_MAX_DELAY      8s     also caps Retry-After
//	WORK_MAX_OUTPUT_TOKENS     4096
//	OPENAI_REQUIRE_USAGE       false  true: a response without usage is an error
func ConfigFromEnv(e *env.Reader) Config {
	work := e.String("WORK_MODEL", "")
	return Config{
		BaseURL:         e.String("OPENAI_BASE_URL", ""),
		APIKey:          e.Secret("OPENAI_API_KEY"),
		WorkModel:       work,
		EvalModel:       e.String("EVAL_MODEL", work),
		Timeout:         e.Duration("AGENT_TIMEOUT", DefaultTimeout),
		MaxRetries:      int(e.Int("AGENT_MAX_RETRIES", DefaultMaxRetries)),
		RetryBaseDelay:  e.Duration("AGENT_RETRY_BASE_DELAY", DefaultRetryBaseDelay),
		RetryMaxDelay:   e.Duration("AGENT_RETRY_MAX_DELAY", DefaultRetryMaxDelay),
		MaxOutputTokens: e.Int("WORK_MAX_OUTPUT_TOKENS", DefaultMaxOutputTokens),
		RequireUsage:    e.Bool("OPENAI_REQUIRE_USAGE", false),
	}
}
