package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/anthropic"
	"github.com/timmyhq/timmy/agent/openai"
	"github.com/timmyhq/timmy/internal/env"
)

// loadAgent picks the real agent the environment names and returns it with
// its name for logs and /health: Anthropic when ANTHROPIC_API_KEY is set,
// an OpenAI-compatible server when OPENAI_BASE_URL is set. With neither it
// returns nil and "" and the caller uses the stub. With both it is an error
// unless AGENT_BACKEND says which one to use, because which model does the
// paid work must never be a guess. AGENT_BACKEND=stub forces the stub. The
// variables are documented in the README (Configuration: Agents and pricing); parse errors
// stay in e for the caller to report.
func loadAgent(e *env.Reader, logger *slog.Logger) (timmy.Agent, string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	backend := strings.ToLower(e.String("AGENT_BACKEND", ""))
	useAnthropic, useOpenAI := e.Set("ANTHROPIC_API_KEY"), e.Set("OPENAI_BASE_URL")
	switch backend {
	case "":
		switch {
		case useAnthropic && useOpenAI:
			return nil, "", fmt.Errorf("both ANTHROPIC_API_KEY and OPENAI_BASE_URL are set: set AGENT_BACKEND to anthropic or openai")
		case useAnthropic:
			backend = "anthropic"
		case useOpenAI:
			backend = "openai"
		default:
			return nil, "", nil
		}
	case "anthropic", "openai":
	case "stub":
		return nil, "", nil
	default:
		return nil, "", fmt.Errorf("AGENT_BACKEND %q: want anthropic, openai or stub", backend)
	}

	if backend == "anthropic" {
		a, err := anthropic.New(anthropic.ConfigFromEnv(e))
		if err != nil {
			return nil, backend, err
		}
		return a, backend, nil
	}
	cfg := openai.ConfigFromEnv(e)
	cfg.Logger = logger.With("agent", "openai")
	a, err := openai.New(cfg)
	if err != nil {
		return nil, backend, err
	}
	return a, backend, nil
}
