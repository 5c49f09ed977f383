package main

import (
	"log/slog"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/store"
)

func loadLightning(e *env.Reader, db *store.DB, log *slog.Logger) (timmy.Lightning, string, error) {
	return nil, "", nil
}

func loadAgent(e *env.Reader, log *slog.Logger) (timmy.Agent, string, error) { return nil, "", nil }
