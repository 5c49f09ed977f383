package pricing_test

import (
	"log/slog"
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/pricing"
)

// deadURL is a base URL nothing listens on any more.
func deadURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(nil)
	u := srv.URL
	srv.Close()
	return u
}

// The required case: with BTC_PRICE_USD_FALLBACK=50000 and no source
// reachable, amountSats = ceil(total × (1 + margin) / 50000 × 1e8), where
// total is the token cost plus the infra share, and the fields add up.
func TestQuoteAtFallbackPriceAddsUp(t *testing.T) {
	t.Parallel()
	dead := deadURL(t)
	e := env.FromMap(map[string]string{
		"BTC_PRICE_USD_FALLBACK":  "50000",
		"BTC_PRICE_SOURCES":       "coingecko,kraken,coinbase",
		"BTC_PRICE_COINGECKO_URL": dead,
		"BTC_PRICE_KRAKEN_URL":    dead,
		"BTC_PRICE_COINBASE_URL":  dead,
		"BTC_PRICE_TIMEOUT":       "1s",
	})
	m, err := pricing.FromEnv(e, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, e.Err())

	request := strings.Repeat("Explain the Lightning Network to a five-year-old. ", 10) // 510 chars: medium
	q, err := m.QuoteWork(t.Context(), request, "claude-sonnet-4-5")
	require.NoError(t, err)

	require.Equal(t, "claude-sonnet-4-5", q.Model)
	require.Equal(t, 50000.0, q.BTCPriceUSD)
	require.Equal(t, pricing.FallbackSource, q.BTCPriceSource)
	require.Equal(t, 25.0, q.MarginPct)
	require.EqualValues(t, (len(request)+3)/4+100, q.EstimatedInputTokens)
	require.EqualValues(t, 1000, q.EstimatedOutputTokens)

	// The token cost alone, at Sonnet's $3/$15 per million.
	wantCost := (float64(q.EstimatedInputTokens)*3 + float64(q.EstimatedOutputTokens)*15) / 1e6
	require.InDelta(t, wantCost, q.EstimatedCostUSD, 1e-12)
	require.InDelta(t, 20.0/10000, q.InfraCostUSD, 1e-12)

	total := q.EstimatedCostUSD + q.InfraCostUSD
	want := math.Ceil(total * (1 + q.MarginPct/100) / 50000 * 1e8)
	require.EqualValues(t, want, q.AmountSats)
	// With these numbers: (0.015684 + 0.002) × 1.25 / 50000 × 1e8 = 44.21 → 45 sats.
	require.EqualValues(t, 45, q.AmountSats)
}

func TestNoSourcesMeansTheFallbackOnly(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{"BTC_PRICE_SOURCES": "none", "BTC_PRICE_USD_FALLBACK": "80000"})
	m, err := pricing.FromEnv(e, nil)
	require.NoError(t, err)
	require.NoError(t, e.Err())
	q, err := m.QuoteWork(t.Context(), "hi", "claude-sonnet-4-5")
	require.NoError(t, err)
	require.Equal(t, 80000.0, q.BTCPriceUSD)
	require.Equal(t, pricing.FallbackSource, q.BTCPriceSource)
	p, err := m.BTCPrice(t.Context())
	require.NoError(t, err)
	require.Equal(t, 80000.0, p.USD)
}

func TestEstimateTiers(t *testing.T) {
	t.Parallel()
	m, err := pricing.New(pricing.DefaultConfig(pricing.FixedPrice{USD: 100000}))
	require.NoError(t, err)
	cases := []struct {
		chars int
		out   int64
	}{
		{1, 500}, {280, 500}, {281, 1000}, {2000, 1000}, {2001, 2000}, {50000, 2000},
	}
	for _, c := range cases {
		req := strings.Repeat("a", c.chars)
		require.Equal(t, c.out, m.EstimateOutputTokens(req), "%d chars", c.chars)
		require.EqualValues(t, (c.chars+3)/4+pricing.DefaultSystemPromptTokens, m.EstimateInputTokens(req))
	}
	// Characters, not bytes, pick the tier; bytes drive the input estimate,
	// which errs high for scripts that cost more tokens per character.
	jp := strings.Repeat("日", 280) // 840 bytes
	require.EqualValues(t, 500, m.EstimateOutputTokens(jp))
	require.EqualValues(t, 210+pricing.DefaultSystemPromptTokens, m.EstimateInputTokens(jp))

	capped := pricing.DefaultConfig(pricing.FixedPrice{USD: 100000})
	capped.MaxOutputTokens = 700
	m, err = pricing.New(capped)
	require.NoError(t, err)
	require.EqualValues(t, 700, m.EstimateOutputTokens(strings.Repeat("a", 3000)))
}

func TestRatesByModel(t *testing.T) {
	t.Parallel()
	cfg := pricing.DefaultConfig(pricing.FixedPrice{USD: 100000})
	cfg.Rates["claude-sonnet-4-5-fast"] = pricing.Rate{InputUSDPerMTok: 6, OutputUSDPerMTok: 30}
	m, err := pricing.New(cfg)
	require.NoError(t, err)
	cases := []struct {
		model   string
		in, out float64
		key     string
	}{
		{"claude-haiku-4-5", 1, 5, "haiku"},
		{"claude-haiku-4-5-20251001", 1, 5, "haiku"},
		{"claude-sonnet-4-5", 3, 15, "sonnet"},
		{"claude-sonnet-4-5-fast", 6, 30, "claude-sonnet-4-5-fast"},          // exact beats family
		{"claude-sonnet-4-5-fast-20260101", 6, 30, "claude-sonnet-4-5-fast"}, // longest key wins
		{"llama3.2", 3, 15, "unknown"},
	}
	for _, c := range cases {
		r, key := m.RateFor(c.model)
		require.Equal(t, pricing.Rate{InputUSDPerMTok: c.in, OutputUSDPerMTok: c.out}, r, c.model)
		require.Equal(t, c.key, key, c.model)
	}
}

func TestActualCostUsesTheUsagesModel(t *testing.T) {
	t.Parallel()
	m, err := pricing.New(pricing.DefaultConfig(pricing.FixedPrice{USD: 100000}))
	require.NoError(t, err)
	got := m.ActualCostUSD(timmy.Usage{Model: "claude-haiku-4-5", InputTokens: 2_000_000, OutputTokens: 1_000_000})
	require.InDelta(t, 2*1.0+1*5.0, got, 1e-9)
	got = m.ActualCostUSD(timmy.Usage{Model: "claude-sonnet-4-5", InputTokens: 1234, OutputTokens: 567})
	require.InDelta(t, (1234*3.0+567*15.0)/1e6, got, 1e-15)
}

func TestQuoteNeverBelowOneSat(t *testing.T) {
	t.Parallel()
	cfg := pricing.DefaultConfig(pricing.FixedPrice{USD: 100000, Source: "test"})
	cfg.Rates = map[string]pricing.Rate{"free": {}}
	cfg.InfraMonthlyCostUSD = 0
	cfg.MarginPct = 0
	m, err := pricing.New(cfg)
	require.NoError(t, err)
	q, err := m.QuoteWork(t.Context(), "hi", "free-model")
	require.NoError(t, err)
	require.Zero(t, q.EstimatedCostUSD)
	require.EqualValues(t, 1, q.AmountSats)
	require.Equal(t, "test", q.BTCPriceSource)
}

func TestEnvOverridesAndValidation(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{
		"SONNET_INPUT_USD_PER_MTOK":       "4",
		"MODEL_RATES_USD_PER_MTOK":        "llama3.2=0:0, gpt-4o=2.5:10",
		"ORIGINATOR_MARGIN_PCT":           "10",
		"INFRA_MONTHLY_COST_USD":          "100",
		"INFRA_EXPECTED_MONTHLY_REQUESTS": "1000",
		"PRICING_SHORT_OUTPUT_TOKENS":     "300",
	})
	cfg, err := pricing.ConfigFromEnv(e, pricing.FixedPrice{USD: 100000})
	require.NoError(t, err)
	require.NoError(t, e.Err())
	m, err := pricing.New(cfg)
	require.NoError(t, err)
	r, _ := m.RateFor("claude-sonnet-4-5")
	require.Equal(t, pricing.Rate{InputUSDPerMTok: 4, OutputUSDPerMTok: 15}, r)
	r, key := m.RateFor("llama3.2:latest")
	require.Equal(t, pricing.Rate{}, r)
	require.Equal(t, "llama3.2", key)
	require.Equal(t, 10.0, m.MarginPct())
	require.InDelta(t, 0.1, m.InfraCostUSD(), 1e-12)
	require.EqualValues(t, 300, m.EstimateOutputTokens("short"))

	_, err = pricing.ConfigFromEnv(env.FromMap(map[string]string{"MODEL_RATES_USD_PER_MTOK": "llama=cheap"}), pricing.FixedPrice{})
	require.ErrorContains(t, err, "MODEL_RATES_USD_PER_MTOK")
	_, err = pricing.OracleConfigFromEnv(env.FromMap(map[string]string{"BTC_PRICE_SOURCES": "coingecko,binance"}))
	require.ErrorContains(t, err, "binance")
	_, err = pricing.OracleConfigFromEnv(env.FromMap(map[string]string{"BTC_PRICE_USD_FALLBACK": "0"}))
	require.ErrorContains(t, err, "BTC_PRICE_USD_FALLBACK")

	e = env.FromMap(map[string]string{"ORIGINATOR_MARGIN_PCT": "a lot"})
	_, err = pricing.ConfigFromEnv(e, pricing.FixedPrice{})
	require.NoError(t, err)
	require.ErrorContains(t, e.Err(), "ORIGINATOR_MARGIN_PCT")

	bad := pricing.DefaultConfig(pricing.FixedPrice{})
	bad.MarginPct = -5
	_, err = pricing.New(bad)
	require.ErrorContains(t, err, "margin")
	bad = pricing.DefaultConfig(pricing.FixedPrice{})
	bad.InfraExpectedMonthlyRequests = 0
	_, err = pricing.New(bad)
	require.ErrorContains(t, err, "expected monthly requests")
	_, err = pricing.New(pricing.DefaultConfig(nil))
	require.ErrorContains(t, err, "oracle")
}

func TestOracleConfigFromEnvDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := pricing.OracleConfigFromEnv(env.FromMap(nil))
	require.NoError(t, err)
	require.Len(t, cfg.Sources, 1)
	require.Equal(t, pricing.CoinGeckoName, cfg.Sources[0].Name)
	require.Equal(t, "https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&vs_currencies=usd", cfg.Sources[0].URL)
	require.Equal(t, pricing.DefaultTimeout, cfg.Timeout)
	require.Equal(t, pricing.DefaultCacheTTL, cfg.CacheTTL)
	require.Equal(t, pricing.DefaultMaxAge, cfg.MaxAge)
	require.Equal(t, pricing.DefaultFallbackUSD, cfg.FallbackUSD)

	cfg, err = pricing.OracleConfigFromEnv(env.FromMap(map[string]string{"BTC_PRICE_SOURCES": "Kraken, coinbase"}))
	require.NoError(t, err)
	require.Equal(t, "https://api.kraken.com/0/public/Ticker?pair=XBTUSD", cfg.Sources[0].URL)
	require.Equal(t, "https://api.coinbase.com/v2/prices/BTC-USD/spot", cfg.Sources[1].URL)
}
