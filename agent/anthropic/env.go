package anthropic

import "github.com/timmyhq/timmy/internal/env"

// ConfigFromEnv reads the agent's settings. Parse errors are recorded in e
// for the caller to report; the defaults stand in until then. The timeout,
// retry and output-cap variables are shared with the OpenAI-compatible
// agent, since only one agent runs at a time.
//
//	ANTHROPIC_API_KEY (or _FILE)  required
//	ANTHROPIC_BASE_URL            https://api.anthropic.com
//	EVAL_MODEL                    claude-haiku-4-5
//	WORK_MODEL                    claude-sonnet-4-5
//	AGENT_TIMEOUT                 2m     per attempt
//	AGENT_MAX_RETRIES             2      retries of 429/529/5xx/timeouts (0..10)
//	AGENT_RETRY_BASE_DELAY        500ms  doubled per retry
//	AGENT_RETRY_MAX_DELAY         8s     also caps Retry-After
//	WORK_MAX_OUTPUT_TOKENS        4096
func ConfigFromEnv(e *env.Reader) Config {
	return Config{
		APIKey:          e.Secret("ANTHROPIC_API_KEY"),
		BaseURL:         e.String("ANTHROPIC_BASE_URL", DefaultBaseURL),
		EvalModel:       e.String("EVAL_MODEL", DefaultEvalModel),
		WorkModel:       e.String("WORK_MODEL", DefaultWorkModel),
		Timeout:         e.Duration("AGENT_TIMEOUT", DefaultTimeout),
		MaxRetries:      int(e.Int("AGENT_MAX_RETRIES", DefaultMaxRetries)),
		RetryBaseDelay:  e.Duration("AGENT_RETRY_BASE_DELAY", DefaultRetryBaseDelay),
		RetryMaxDelay:   e.Duration("AGENT_RETRY_MAX_DELAY", DefaultRetryMaxDelay),
		MaxOutputTokens: e.Int("WORK_MAX_OUTPUT_TOKENS", DefaultMaxOutputTokens),
	}
}
