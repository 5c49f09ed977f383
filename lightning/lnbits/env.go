package lnbits

import (
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/lightning"
)

// The environment variables ConfigFromEnv reads. They are listed, with
// their defaults, in the README (Configuration: Lightning backends).
const (
	EnvURL        = "LNBITS_URL"
	EnvAPIKey     = "LNBITS_API_KEY"
	EnvAdminKey   = "LNBITS_ADMIN_KEY"
	EnvTimeout    = "LNBITS_TIMEOUT"
	EnvPayTimeout = "LNBITS_PAY_TIMEOUT"
)

// ConfigFromEnv reads the LNBITS_* variables, keeping each default next to
// the code that uses it. The keys are secrets and may instead be given in
// files named by LNBITS_API_KEY_FILE and LNBITS_ADMIN_KEY_FILE. Parse errors
// are recorded in e; New reports missing values.
func ConfigFromEnv(e *env.Reader) Config {
	return Config{
		URL:        e.String(EnvURL, ""),
		InvoiceKey: e.Secret(EnvAPIKey),
		AdminKey:   e.Secret(EnvAdminKey),
		Timeout:    e.Duration(EnvTimeout, lightning.DefaultTimeout),
		PayTimeout: e.Duration(EnvPayTimeout, lightning.DefaultPayTimeout),
	}
}
