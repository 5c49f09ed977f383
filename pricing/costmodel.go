// Package pricing turns a request into a work fee, and the tokens the work
// actually used into a cost. It holds the cost model (token rates per model,
// the per-request share of the servers' monthly bill, and the originator
// margin) and the BTC/USD oracle that converts the USD total into sats.
//
// USD figures are floats here because they are estimates and display values;
// the only amount anyone is charged is the integer sats that
// timmy.USDToSats produces, which rounds up with a minimum of 1 sat.
package pricing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/timmyhq/timmy"
)

var _ timmy.Pricer = (*CostModel)(nil)

// Rate is what a model costs per million tokens, in USD, the unit every
// provider publishes its prices in.
type Rate struct {
	InputUSDPerMTok  float64
	OutputUSDPerMTok float64
}

// Cost returns the USD cost of the given token counts at this rate.
func (r Rate) Cost(inputTokens, outputTokens int64) float64 {
	return (float64(inputTokens)*r.InputUSDPerMTok + float64(outputTokens)*r.OutputUSDPerMTok) / 1e6
}

func (r Rate) validate() error {
	for _, v := range []float64{r.InputUSDPerMTok, r.OutputUSDPerMTok} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("rate %v/%v USD per Mtok: must be finite and not negative", r.InputUSDPerMTok, r.OutputUSDPerMTok)
		}
	}
	return nil
}

// The default rates, in USD per million tokens, from Anthropic's price list
// for the default evaluation and work models.
const (
	DefaultHaikuInputUSDPerMTok   = 1.0
	DefaultHaikuOutputUSDPerMTok  = 5.0
	DefaultSonnetInputUSDPerMTok  = 3.0
	DefaultSonnetOutputUSDPerMTok = 15.0
)

// The rate keys the default table uses. A key matches every model whose name
// contains it, so "haiku" prices claude-haiku-4-5 and its dated snapshots.
const (
	HaikuKey  = "haiku"
	SonnetKey = "sonnet"
)

// Defaults for the rest of the cost model. Each is documented with its env
// var in the README (Configuration: Agents and pricing).
const (
	// DefaultUnknownInputUSDPerMTok and DefaultUnknownOutputUSDPerMTok price a
	// model no rate key matches. They are Sonnet's rates, so an unknown model
	// is never priced as if it were cheap.
	DefaultUnknownInputUSDPerMTok  = DefaultSonnetInputUSDPerMTok
	DefaultUnknownOutputUSDPerMTok = DefaultSonnetOutputUSDPerMTok

	// DefaultInfraMonthlyCostUSD is a small VPS plus database.
	DefaultInfraMonthlyCostUSD = 20.0
	// DefaultInfraExpectedMonthlyRequests spreads that cost over 10,000
	// paid requests a month, so each carries $0.002.
	DefaultInfraExpectedMonthlyRequests = 10000
	// DefaultMarginPct is the originator margin added on top of cost.
	DefaultMarginPct = 25.0
	// DefaultSystemPromptTokens is the work system prompt and message
	// framing, which the model reads on top of the request.
	DefaultSystemPromptTokens = 100
	// DefaultMaxOutputTokens matches the agents' default output cap, so a
	// quote never assumes more output than the agent may produce.
	DefaultMaxOutputTokens = 4096
)

// Tiers sorts requests by length, in characters, into short, medium and
// long, and says how many output tokens each tier is expected to need. The
// request's length is the only thing known before the work runs, and a
// longer request usually asks for a longer answer.
type Tiers struct {
	// ShortMaxChars is the longest request that is still short.
	ShortMaxChars int
	// MediumMaxChars is the longest request that is still medium; anything
	// longer is long.
	MediumMaxChars     int
	ShortOutputTokens  int64
	MediumOutputTokens int64
	LongOutputTokens   int64
}

// DefaultTiers are: up to 280 characters (a short question) → 500 output
// tokens; up to 2,000 characters (a paragraph or two of instructions) →
// 1,000; anything longer → 2,000.
func DefaultTiers() Tiers {
	return Tiers{
		ShortMaxChars:      280,
		MediumMaxChars:     2000,
		ShortOutputTokens:  500,
		MediumOutputTokens: 1000,
		LongOutputTokens:   2000,
	}
}

func (t Tiers) validate() error {
	if t.ShortMaxChars <= 0 || t.MediumMaxChars <= t.ShortMaxChars {
		return fmt.Errorf("tiers: need 0 < short max chars (%d) < medium max chars (%d)", t.ShortMaxChars, t.MediumMaxChars)
	}
	if t.ShortOutputTokens <= 0 || t.MediumOutputTokens <= 0 || t.LongOutputTokens <= 0 {
		return errors.New("tiers: output token estimates must be positive")
	}
	return nil
}

// Config is the cost model's settings. Start from DefaultConfig, because a
// zero margin or a zero infra cost are legitimate choices and so a zero
// field is taken literally.
type Config struct {
	// Rates maps a rate key to its price. A key matches a model whose name
	// equals it or contains it; the longest matching key wins, so an exact
	// model name beats a family such as "sonnet".
	Rates map[string]Rate
	// UnknownRate prices a model that no key matches.
	UnknownRate Rate

	// InfraMonthlyCostUSD over InfraExpectedMonthlyRequests is the infra
	// share every request carries.
	InfraMonthlyCostUSD          float64
	InfraExpectedMonthlyRequests int64

	// MarginPct is the originator margin, in percent of cost.
	MarginPct float64

	// SystemPromptTokens is added to every input estimate.
	SystemPromptTokens int64
	// Tiers estimates output tokens from the request's length.
	Tiers Tiers
	// MaxOutputTokens caps the output estimate at what the agent may
	// produce; zero means no cap.
	MaxOutputTokens int64

	// Oracle supplies the BTC/USD price. It is required.
	Oracle PriceOracle
}

// DefaultRates returns the default rate table: Haiku and Sonnet families.
func DefaultRates() map[string]Rate {
	return map[string]Rate{
		HaikuKey:  {InputUSDPerMTok: DefaultHaikuInputUSDPerMTok, OutputUSDPerMTok: DefaultHaikuOutputUSDPerMTok},
		SonnetKey: {InputUSDPerMTok: DefaultSonnetInputUSDPerMTok, OutputUSDPerMTok: DefaultSonnetOutputUSDPerMTok},
	}
}

// DefaultConfig returns the documented defaults, with oracle as the price
// source.
func DefaultConfig(oracle PriceOracle) Config {
	return Config{
		Rates:                        DefaultRates(),
		UnknownRate:                  Rate{InputUSDPerMTok: DefaultUnknownInputUSDPerMTok, OutputUSDPerMTok: DefaultUnknownOutputUSDPerMTok},
		InfraMonthlyCostUSD:          DefaultInfraMonthlyCostUSD,
		InfraExpectedMonthlyRequests: DefaultInfraExpectedMonthlyRequests,
		MarginPct:                    DefaultMarginPct,
		SystemPromptTokens:           DefaultSystemPromptTokens,
		Tiers:                        DefaultTiers(),
		MaxOutputTokens:              DefaultMaxOutputTokens,
		Oracle:                       oracle,
	}
}

// CostModel prices work before it runs (QuoteWork) and costs it after
// (ActualCostUSD). It implements timmy.Pricer and is safe for concurrent
// use.
type CostModel struct {
	cfg Config
}

// New checks cfg and returns the cost model.
func New(cfg Config) (*CostModel, error) {
	if cfg.Oracle == nil {
		return nil, errors.New("pricing: an oracle is required")
	}
	rates := make(map[string]Rate, len(cfg.Rates))
	for k, r := range cfg.Rates {
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, errors.New("pricing: empty rate key")
		}
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("pricing: %s: %w", k, err)
		}
		rates[k] = r
	}
	cfg.Rates = rates
	if err := cfg.UnknownRate.validate(); err != nil {
		return nil, fmt.Errorf("pricing: unknown-model rate: %w", err)
	}
	if cfg.InfraMonthlyCostUSD < 0 || math.IsNaN(cfg.InfraMonthlyCostUSD) || math.IsInf(cfg.InfraMonthlyCostUSD, 0) {
		return nil, fmt.Errorf("pricing: infra monthly cost %v: must be finite and not negative", cfg.InfraMonthlyCostUSD)
	}
	if cfg.InfraExpectedMonthlyRequests <= 0 {
		return nil, fmt.Errorf("pricing: expected monthly requests %d: must be positive", cfg.InfraExpectedMonthlyRequests)
	}
	if cfg.MarginPct < 0 || math.IsNaN(cfg.MarginPct) || math.IsInf(cfg.MarginPct, 0) {
		return nil, fmt.Errorf("pricing: margin %v%%: must be finite and not negative", cfg.MarginPct)
	}
	if cfg.SystemPromptTokens < 0 {
		return nil, fmt.Errorf("pricing: system prompt tokens %d: must not be negative", cfg.SystemPromptTokens)
	}
	if cfg.MaxOutputTokens < 0 {
		return nil, fmt.Errorf("pricing: max output tokens %d: must not be negative", cfg.MaxOutputTokens)
	}
	if err := cfg.Tiers.validate(); err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	return &CostModel{cfg: cfg}, nil
}

// RateFor returns the rate for model and the key that matched it, or
// "unknown" when the unknown-model rate applies.
func (m *CostModel) RateFor(model string) (Rate, string) {
	if r, ok := m.cfg.Rates[model]; ok {
		return r, model
	}
	best := ""
	for k := range m.cfg.Rates {
		if strings.Contains(model, k) && (len(k) > len(best) || (len(k) == len(best) && k < best)) {
			best = k
		}
	}
	if best == "" {
		return m.cfg.UnknownRate, "unknown"
	}
	return m.cfg.Rates[best], best
}

// EstimateInputTokens guesses the input tokens of a request: one token per
// four bytes of UTF-8, rounded up, plus the system prompt. Four characters a
// token is the usual rule for English; counting bytes rather than characters
// errs high for other scripts, whose characters cost more tokens each.
func (m *CostModel) EstimateInputTokens(request string) int64 {
	return (int64(len(request))+3)/4 + m.cfg.SystemPromptTokens
}

// EstimateOutputTokens guesses the output tokens of a request from its tier
// (see Tiers), capped at the agent's maximum output.
func (m *CostModel) EstimateOutputTokens(request string) int64 {
	n := utf8.RuneCountInString(request)
	var out int64
	switch {
	case n <= m.cfg.Tiers.ShortMaxChars:
		out = m.cfg.Tiers.ShortOutputTokens
	case n <= m.cfg.Tiers.MediumMaxChars:
		out = m.cfg.Tiers.MediumOutputTokens
	default:
		out = m.cfg.Tiers.LongOutputTokens
	}
	if m.cfg.MaxOutputTokens > 0 && out > m.cfg.MaxOutputTokens {
		out = m.cfg.MaxOutputTokens
	}
	return out
}

// InfraCostUSD is the share of the monthly server bill each request
// carries.
func (m *CostModel) InfraCostUSD() float64 {
	return m.cfg.InfraMonthlyCostUSD / float64(m.cfg.InfraExpectedMonthlyRequests)
}

// MarginPct is the originator margin in percent.
func (m *CostModel) MarginPct() float64 { return m.cfg.MarginPct }

// QuoteWork prices a request's work for model: the estimated token cost
// plus the infra share, plus the margin, converted to sats at the oracle's
// price and rounded up. Every field of the quote is filled, so the buyer can
// check that
//
//	amountSats = ceil((estimatedCostUsd + infraCostUsd) × (1 + marginPct/100) / btcPriceUsd × 1e8)
func (m *CostModel) QuoteWork(ctx context.Context, request, model string) (timmy.Quote, error) {
	price, err := m.cfg.Oracle.Price(ctx)
	if err != nil {
		return timmy.Quote{}, fmt.Errorf("quote work: %w", err)
	}
	in := m.EstimateInputTokens(request)
	out := m.EstimateOutputTokens(request)
	rate, _ := m.RateFor(model)
	q := timmy.Quote{
		Model:                 model,
		EstimatedInputTokens:  in,
		EstimatedOutputTokens: out,
		EstimatedCostUSD:      rate.Cost(in, out),
		InfraCostUSD:          m.InfraCostUSD(),
		MarginPct:             m.cfg.MarginPct,
		BTCPriceUSD:           price.USD,
		BTCPriceSource:        price.Source,
	}
	q.AmountSats = timmy.USDToSats((q.EstimatedCostUSD+q.InfraCostUSD)*(1+q.MarginPct/100), q.BTCPriceUSD)
	return q, nil
}

// ActualCostUSD is the token cost of usage at its model's rate. It has no
// infra share or margin: it is what the work cost the service, for the
// ledger and for debiting sessions.
func (m *CostModel) ActualCostUSD(usage timmy.Usage) float64 {
	rate, _ := m.RateFor(usage.Model)
	return rate.Cost(usage.InputTokens, usage.OutputTokens)
}

// BTCPrice returns the oracle's current price, for callers that convert
// other USD amounts (such as a session's actual cost) into sats.
func (m *CostModel) BTCPrice(ctx context.Context) (Price, error) {
	p, err := m.cfg.Oracle.Price(ctx)
	if err != nil {
		return Price{}, fmt.Errorf("btc price: %w", err)
	}
	return p, nil
}
