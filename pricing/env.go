package pricing

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/timmyhq/timmy/internal/env"
)

// OracleConfigFromEnv reads the BTC/USD oracle's settings. Parse errors are
// recorded in e; an unknown source name is returned as an error.
//
//	BTC_PRICE_SOURCES        coingecko   comma-separated: coingecko, kraken, coinbase
//	                                     (FromEnv also takes "none": the fallback only)
//	BTC_PRICE_COINGECKO_URL  https://api.coingecko.com
//	BTC_PRICE_KRAKEN_URL     https://api.kraken.com
//	BTC_PRICE_COINBASE_URL   https://api.coinbase.com
//	BTC_PRICE_TIMEOUT        5s          per source
//	BTC_PRICE_CACHE_TTL      60s
//	BTC_PRICE_MAX_AGE        10m
//	BTC_PRICE_USD_FALLBACK   100000
func OracleConfigFromEnv(e *env.Reader) (OracleConfig, error) {
	cfg := OracleConfig{
		Timeout:     e.Duration("BTC_PRICE_TIMEOUT", DefaultTimeout),
		CacheTTL:    e.Duration("BTC_PRICE_CACHE_TTL", DefaultCacheTTL),
		MaxAge:      e.Duration("BTC_PRICE_MAX_AGE", DefaultMaxAge),
		FallbackUSD: e.Float("BTC_PRICE_USD_FALLBACK", DefaultFallbackUSD),
	}
	if cfg.FallbackUSD <= 0 {
		return cfg, fmt.Errorf("BTC_PRICE_USD_FALLBACK: %v must be positive", cfg.FallbackUSD)
	}
	urls := map[string]string{
		CoinGeckoName: e.String("BTC_PRICE_COINGECKO_URL", CoinGeckoBaseURL),
		KrakenName:    e.String("BTC_PRICE_KRAKEN_URL", KrakenBaseURL),
		CoinbaseName:  e.String("BTC_PRICE_COINBASE_URL", CoinbaseBaseURL),
	}
	names := e.List("BTC_PRICE_SOURCES", []string{CoinGeckoName})
	if len(names) == 0 {
		return cfg, fmt.Errorf("BTC_PRICE_SOURCES: name at least one source (%s)", strings.Join(SourceNames, ", "))
	}
	for _, n := range names {
		s, err := SourceByName(n, urls[strings.ToLower(n)])
		if err != nil {
			return cfg, fmt.Errorf("BTC_PRICE_SOURCES: %w", err)
		}
		cfg.Sources = append(cfg.Sources, s)
	}
	return cfg, nil
}

// ConfigFromEnv reads the cost model's settings, with oracle as its price
// source. Parse errors are recorded in e; a malformed MODEL_RATES_USD_PER_MTOK
// is returned as an error.
//
//	HAIKU_INPUT_USD_PER_MTOK          1
//	HAIKU_OUTPUT_USD_PER_MTOK         5
//	SONNET_INPUT_USD_PER_MTOK         3
//	SONNET_OUTPUT_USD_PER_MTOK        15
//	UNKNOWN_MODEL_INPUT_USD_PER_MTOK  3    a model no rate key matches
//	UNKNOWN_MODEL_OUTPUT_USD_PER_MTOK 15
//	MODEL_RATES_USD_PER_MTOK          ""   extra keys: "llama3.2=0:0,gpt-4o=2.5:10"
//	INFRA_MONTHLY_COST_USD            20
//	INFRA_EXPECTED_MONTHLY_REQUESTS   10000
//	ORIGINATOR_MARGIN_PCT             25
//	PRICING_SYSTEM_PROMPT_TOKENS      100
//	PRICING_SHORT_REQUEST_CHARS       280
//	PRICING_MEDIUM_REQUEST_CHARS      2000
//	PRICING_SHORT_OUTPUT_TOKENS       500
//	PRICING_MEDIUM_OUTPUT_TOKENS      1000
//	PRICING_LONG_OUTPUT_TOKENS        2000
//	WORK_MAX_OUTPUT_TOKENS            4096  shared with the agents
func ConfigFromEnv(e *env.Reader, oracle PriceOracle) (Config, error) {
	cfg := DefaultConfig(oracle)
	cfg.Rates[HaikuKey] = Rate{
		InputUSDPerMTok:  e.Float("HAIKU_INPUT_USD_PER_MTOK", DefaultHaikuInputUSDPerMTok),
		OutputUSDPerMTok: e.Float("HAIKU_OUTPUT_USD_PER_MTOK", DefaultHaikuOutputUSDPerMTok),
	}
	cfg.Rates[SonnetKey] = Rate{
		InputUSDPerMTok:  e.Float("SONNET_INPUT_USD_PER_MTOK", DefaultSonnetInputUSDPerMTok),
		OutputUSDPerMTok: e.Float("SONNET_OUTPUT_USD_PER_MTOK", DefaultSonnetOutputUSDPerMTok),
	}
	cfg.UnknownRate = Rate{
		InputUSDPerMTok:  e.Float("UNKNOWN_MODEL_INPUT_USD_PER_MTOK", DefaultUnknownInputUSDPerMTok),
		OutputUSDPerMTok: e.Float("UNKNOWN_MODEL_OUTPUT_USD_PER_MTOK", DefaultUnknownOutputUSDPerMTok),
	}
	extra, err := ParseRates(e.String("MODEL_RATES_USD_PER_MTOK", ""))
	if err != nil {
		return cfg, fmt.Errorf("MODEL_RATES_USD_PER_MTOK: %w", err)
	}
	for k, r := range extra {
		cfg.Rates[k] = r
	}
	cfg.InfraMonthlyCostUSD = e.Float("INFRA_MONTHLY_COST_USD", DefaultInfraMonthlyCostUSD)
	cfg.InfraExpectedMonthlyRequests = e.Int("INFRA_EXPECTED_MONTHLY_REQUESTS", DefaultInfraExpectedMonthlyRequests)
	cfg.MarginPct = e.Float("ORIGINATOR_MARGIN_PCT", DefaultMarginPct)
	cfg.SystemPromptTokens = e.Int("PRICING_SYSTEM_PROMPT_TOKENS", DefaultSystemPromptTokens)
	d := DefaultTiers()
	cfg.Tiers = Tiers{
		ShortMaxChars:      int(e.Int("PRICING_SHORT_REQUEST_CHARS", int64(d.ShortMaxChars))),
		MediumMaxChars:     int(e.Int("PRICING_MEDIUM_REQUEST_CHARS", int64(d.MediumMaxChars))),
		ShortOutputTokens:  e.Int("PRICING_SHORT_OUTPUT_TOKENS", d.ShortOutputTokens),
		MediumOutputTokens: e.Int("PRICING_MEDIUM_OUTPUT_TOKENS", d.MediumOutputTokens),
		LongOutputTokens:   e.Int("PRICING_LONG_OUTPUT_TOKENS", d.LongOutputTokens),
	}
	cfg.MaxOutputTokens = e.Int("WORK_MAX_OUTPUT_TOKENS", DefaultMaxOutputTokens)
	return cfg, nil
}

// NoSources, as BTC_PRICE_SOURCES, asks no source at all: every quote uses
// BTC_PRICE_USD_FALLBACK. It is for development, tests and machines without
// internet access.
const NoSources = "none"

// FromEnv builds the oracle and the cost model from the environment. The
// logger receives the oracle's warnings about failing sources. Parse errors
// stay in e, for the caller to report with every other mistake; until then
// the defaults stand in for the values that did not parse.
func FromEnv(e *env.Reader, logger *slog.Logger) (*CostModel, error) {
	var oracle PriceOracle
	if names := e.List("BTC_PRICE_SOURCES", nil); len(names) == 1 && strings.EqualFold(names[0], NoSources) {
		fallback := e.Float("BTC_PRICE_USD_FALLBACK", DefaultFallbackUSD)
		if fallback <= 0 {
			return nil, fmt.Errorf("BTC_PRICE_USD_FALLBACK: %v must be positive", fallback)
		}
		oracle = FixedPrice{USD: fallback, Source: FallbackSource}
	} else {
		ocfg, err := OracleConfigFromEnv(e)
		if err != nil {
			return nil, err
		}
		ocfg.Logger = logger
		o, err := NewOracle(ocfg)
		if err != nil {
			return nil, err
		}
		oracle = o
	}
	cfg, err := ConfigFromEnv(e, oracle)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// ParseRates reads "key=in:out,key=in:out", USD per million input and
// output tokens per rate key. An empty string is an empty table.
func ParseRates(s string) (map[string]Rate, error) {
	rates := map[string]Rate{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		in, out, ok2 := strings.Cut(val, ":")
		key = strings.TrimSpace(key)
		if !ok || !ok2 || key == "" {
			return nil, fmt.Errorf("%q: want model=input:output", item)
		}
		inF, err1 := strconv.ParseFloat(strings.TrimSpace(in), 64)
		outF, err2 := strconv.ParseFloat(strings.TrimSpace(out), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q: rates must be numbers", item)
		}
		r := Rate{InputUSDPerMTok: inF, OutputUSDPerMTok: outF}
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		rates[key] = r
	}
	return rates, nil
}
