package main

import (
	"log/slog"

	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/pricing"
)

// loadPricer builds the cost model and its BTC/USD oracle from the
// environment. The variables are documented in
// the README (Configuration: Agents and pricing); parse errors stay in e for the caller to
// report. The logger receives the oracle's warnings about failing price
// sources.
func loadPricer(e *env.Reader, logger *slog.Logger) (*pricing.CostModel, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return pricing.FromEnv(e, logger.With("part", "btc-oracle"))
}
