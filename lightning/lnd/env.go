package lnd

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/lightning"
)

// The environment variables ConfigFromEnv reads. They are listed, with
// their defaults, in the README (Configuration: Lightning backends).
const (
	EnvRESTURL       = "LND_REST_URL"
	EnvMacaroonPath  = "LND_MACAROON_PATH"
	EnvMacaroonHex   = "LND_MACAROON_HEX"
	EnvTLSCertPath   = "LND_TLS_CERT_PATH"
	EnvTLSServerName = "LND_TLS_SERVER_NAME"
	EnvTimeout       = "LND_TIMEOUT"
	EnvPayTimeout    = "LND_PAY_TIMEOUT"
	EnvFeeLimitSats  = "LND_PAY_FEE_LIMIT_SATS"
	EnvFeeLimitPPM   = "LND_PAY_FEE_LIMIT_PPM"
	EnvPrivate       = "LND_INVOICE_PRIVATE"
)

// ConfigFromEnv reads the LND_* variables and the files they name, keeping
// each default next to the code that uses it. The macaroon comes from
// LND_MACAROON_PATH (the binary file lnd writes, or a file of its hex) or
// LND_MACAROON_HEX (a secret, so LND_MACAROON_HEX_FILE works too), not
// both. Parse errors of plain values are recorded in e; unreadable files
// and a contradictory macaroon setting are returned. Cursors and Logger are
// left for the caller.
func ConfigFromEnv(e *env.Reader) (Config, error) {
	cfg := Config{
		URL:           e.String(EnvRESTURL, ""),
		TLSServerName: e.String(EnvTLSServerName, ""),
		Timeout:       e.Duration(EnvTimeout, lightning.DefaultTimeout),
		PayTimeout:    e.Duration(EnvPayTimeout, lightning.DefaultPayTimeout),
		FeeLimitSats:  timmy.Sats(e.Int(EnvFeeLimitSats, int64(DefaultFeeLimitSats))),
		FeeLimitPPM:   e.Int(EnvFeeLimitPPM, DefaultFeeLimitPPM),
		Private:       e.Bool(EnvPrivate, false),
	}
	macHex := e.Secret(EnvMacaroonHex)
	macPath := e.String(EnvMacaroonPath, "")
	switch {
	case macHex != "" && macPath != "":
		return cfg, fmt.Errorf("set only one of %s and %s", EnvMacaroonPath, EnvMacaroonHex)
	case macHex != "":
		b, err := hex.DecodeString(macHex)
		if err != nil {
			return cfg, fmt.Errorf("%s is not hex: %w", EnvMacaroonHex, err)
		}
		cfg.Macaroon = b
	case macPath != "":
		b, err := os.ReadFile(macPath)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", EnvMacaroonPath, err)
		}
		// Accept a file holding the hex form too, as some tools export it.
		if h, err := hex.DecodeString(strings.TrimSpace(string(b))); err == nil && len(h) > 0 {
			b = h
		}
		cfg.Macaroon = b
	}
	if p := e.String(EnvTLSCertPath, ""); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", EnvTLSCertPath, err)
		}
		cfg.TLSCertPEM = b
	}
	return cfg, nil
}
