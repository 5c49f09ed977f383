package main

import (
	"fmt"
	"log/slog"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/lightning/lnbits"
	"github.com/timmyhq/timmy/lightning/lnd"
)

// loadLightning picks the real Lightning backend the environment names:
// LNbits when LNBITS_URL is set, lnd when LND_REST_URL is set. With neither
// it returns nil and "" and the caller uses the stub. Setting both is an
// error, because the service must know which node holds the buyers' money.
// The backend's other abilities (hold invoices, notifications, refunds)
// are found by type assertion on the result. cursors lets lnd resume its
// invoice subscription after a restart; the variables are documented in
// the README (Configuration: Lightning backends).
func loadLightning(e *env.Reader, cursors lnd.CursorStore, logger *slog.Logger) (timmy.Lightning, string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	useLNbits, useLND := e.Set(lnbits.EnvURL), e.Set(lnd.EnvRESTURL)
	switch {
	case useLNbits && useLND:
		return nil, "", fmt.Errorf("both %s and %s are set: choose one Lightning backend", lnbits.EnvURL, lnd.EnvRESTURL)

	case useLNbits:
		cfg := lnbits.ConfigFromEnv(e)
		cfg.Logger = logger.With("lightning", "lnbits")
		c, err := lnbits.New(cfg)
		if err != nil {
			return nil, "lnbits", err
		}
		if cfg.AdminKey == "" {
			logger.Warn("LNBITS_ADMIN_KEY is not set: refunds owed to buyers cannot be paid until it is")
		}
		return c, "lnbits", nil

	case useLND:
		cfg, err := lnd.ConfigFromEnv(e)
		if err != nil {
			return nil, "lnd", fmt.Errorf("lnd: %w", err)
		}
		cfg.Cursors = cursors
		cfg.Logger = logger.With("lightning", "lnd")
		c, err := lnd.New(cfg)
		if err != nil {
			return nil, "lnd", err
		}
		if len(cfg.TLSCertPEM) == 0 {
			logger.Warn("LND_TLS_CERT_PATH is not set: lnd's certificate is checked against the system roots instead of being pinned")
		}
		return c, "lnd", nil
	}
	return nil, "", nil
}
