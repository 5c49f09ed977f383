package pricing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// PriceOracle supplies the BTC/USD price a quote converts at. The cost
// model needs nothing more, so tests can hand it a FixedPrice.
type PriceOracle interface {
	// Price returns the price to use now. It fails only when ctx ends;
	// when no source answers, a fallback price is returned instead.
	Price(ctx context.Context) (Price, error)
}

// FallbackSource is the btcPriceSource of a price that no source gave: the
// configured BTC_PRICE_USD_FALLBACK.
const FallbackSource = "fallback"

// Price is a BTC/USD price and where it came from.
type Price struct {
	// USD is the price of one bitcoin in US dollars.
	USD float64
	// Source names the source whose answer was used: the median one when
	// several answered, or FallbackSource.
	Source string
	// FetchedAt is when the sources were asked.
	FetchedAt time.Time
	// Answers are what each source said in the fetch that produced this
	// price, for logs and debugging.
	Answers []Answer
}

// Answer is one source's reply in a fetch.
type Answer struct {
	Source string
	USD    float64 // zero when Err is set
	Err    error
}

// Defaults for the oracle. Each is documented with its env var in
// the README (Configuration: Agents and pricing).
const (
	DefaultFallbackUSD = 100000.0
	DefaultTimeout     = 5 * time.Second
	DefaultCacheTTL    = 60 * time.Second
	DefaultMaxAge      = 10 * time.Minute
	// DefaultMinUSD and DefaultMaxUSD bound a believable price. An answer
	// outside them is garbage (a unit mix-up, a broken feed) and is
	// dropped like a failed request.
	DefaultMinUSD = 1000.0
	DefaultMaxUSD = 10000000.0
)

// OracleConfig is the oracle's settings. Zero fields take the defaults
// above, because none of them is meaningful at zero.
type OracleConfig struct {
	// Sources are asked concurrently. Empty means CoinGecko alone.
	Sources []Source
	// Timeout bounds each source's request, so a hung source delays a
	// refresh by at most this long.
	Timeout time.Duration
	// CacheTTL is how long a fetch is reused before the sources are asked
	// again. A failed fetch is remembered as long, so a dead source is not
	// waited on by every quote.
	CacheTTL time.Duration
	// MaxAge is the oldest a price may be and still be used when a refresh
	// fails; older than that, the fallback is used instead.
	MaxAge time.Duration
	// FallbackUSD is the price used when no source has answered within
	// MaxAge.
	FallbackUSD float64
	// MinUSD and MaxUSD bound an acceptable answer.
	MinUSD, MaxUSD float64

	// HTTPClient makes the requests; nil means a plain client.
	HTTPClient *http.Client
	// Now is the clock, injectable for tests; nil means time.Now.
	Now func() time.Time
	// Logger receives a warning for every source that failed; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Oracle is a BTC/USD price from the median of several public sources,
// cached, with a fallback. It is safe for concurrent use, and concurrent
// callers during a refresh share one fetch.
type Oracle struct {
	cfg    OracleConfig
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	group  singleflight.Group

	mu          sync.Mutex
	last        *Price    // the last price a source gave
	lastAttempt time.Time // when the last fetch finished, success or not
	lastAnswers []Answer  // the answers of the last fetch
}

var _ PriceOracle = (*Oracle)(nil)

// NewOracle checks cfg, fills its defaults, and returns the oracle.
func NewOracle(cfg OracleConfig) (*Oracle, error) {
	if len(cfg.Sources) == 0 {
		cfg.Sources = []Source{CoinGecko("")}
	}
	seen := map[string]bool{}
	for _, s := range cfg.Sources {
		if s.Name == "" || s.URL == "" || s.Parse == nil {
			return nil, fmt.Errorf("btc oracle: source %q needs a name, a URL and a parser", s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("btc oracle: source %q listed twice", s.Name)
		}
		seen[s.Name] = true
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxAge < cfg.CacheTTL {
		return nil, fmt.Errorf("btc oracle: max age %s is shorter than the cache TTL %s", cfg.MaxAge, cfg.CacheTTL)
	}
	if cfg.MinUSD <= 0 {
		cfg.MinUSD = DefaultMinUSD
	}
	if cfg.MaxUSD <= 0 {
		cfg.MaxUSD = DefaultMaxUSD
	}
	if cfg.MaxUSD <= cfg.MinUSD {
		return nil, fmt.Errorf("btc oracle: max price %v must exceed min price %v", cfg.MaxUSD, cfg.MinUSD)
	}
	if cfg.FallbackUSD == 0 {
		cfg.FallbackUSD = DefaultFallbackUSD
	}
	if cfg.FallbackUSD < 0 || math.IsNaN(cfg.FallbackUSD) || math.IsInf(cfg.FallbackUSD, 0) {
		return nil, fmt.Errorf("btc oracle: fallback price %v must be positive", cfg.FallbackUSD)
	}
	o := &Oracle{cfg: cfg, client: cfg.HTTPClient, now: cfg.Now, log: cfg.Logger}
	if o.client == nil {
		o.client = &http.Client{}
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	return o, nil
}

// Price returns the cached price while it is younger than the cache TTL,
// and otherwise asks every source (once, however many callers are waiting)
// and uses the median of those that answered. When none answered it keeps
// using the last good price until it is MaxAge old, then the fallback.
//
// The shared fetch is not cancelled by one caller giving up, since others
// may be waiting on it; it is bounded by the per-source timeout instead.
func (o *Oracle) Price(ctx context.Context) (Price, error) {
	if !o.fresh() {
		ch := o.group.DoChan("refresh", func() (any, error) {
			// A caller that found the cache stale just as another
			// refresh finished must not start a second one.
			if !o.fresh() {
				o.refresh(context.WithoutCancel(ctx))
			}
			return nil, nil
		})
		select {
		case <-ch:
		case <-ctx.Done():
			return Price{}, fmt.Errorf("btc price: %w", ctx.Err())
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.usable(o.now()), nil
}

// fresh reports whether the last fetch is younger than the cache TTL.
func (o *Oracle) fresh() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.lastAttempt.IsZero() && o.now().Sub(o.lastAttempt) < o.cfg.CacheTTL
}

// usable is the price to hand out at now. It must be called with o.mu held.
func (o *Oracle) usable(now time.Time) Price {
	if o.last != nil && now.Sub(o.last.FetchedAt) <= o.cfg.MaxAge {
		return *o.last
	}
	return Price{USD: o.cfg.FallbackUSD, Source: FallbackSource, FetchedAt: o.lastAttempt, Answers: o.lastAnswers}
}

// refresh asks every source concurrently and records the outcome.
func (o *Oracle) refresh(ctx context.Context) {
	started := o.now()
	answers := make([]Answer, len(o.cfg.Sources))
	var wg sync.WaitGroup
	for i, s := range o.cfg.Sources {
		wg.Go(func() {
			usd, err := o.fetch(ctx, s)
			answers[i] = Answer{Source: s.Name, USD: usd, Err: err}
		})
	}
	wg.Wait()

	var good []Answer
	for _, a := range answers {
		if a.Err != nil {
			o.log.Warn("btc price source failed", "source", a.Source, "err", a.Err)
			continue
		}
		good = append(good, a)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastAttempt = o.now()
	o.lastAnswers = answers
	if len(good) == 0 {
		o.log.Warn("no btc price source answered", "sources", len(answers))
		return
	}
	m := median(good)
	o.last = &Price{USD: m.USD, Source: m.Source, FetchedAt: started, Answers: answers}
}

// median returns the median answer. With an even count it returns the
// lower of the two middle answers: a real quote from a named source rather
// than an average nobody gave, and the one that charges the buyer more sats
// rather than fewer, so the service never sells below cost.
func median(answers []Answer) Answer {
	sorted := append([]Answer(nil), answers...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].USD < sorted[j].USD })
	return sorted[(len(sorted)-1)/2]
}

// maxBody bounds a source's response; a price is a few hundred bytes.
const maxBody = 1 << 20

// fetch asks one source, within the per-source timeout, and checks the
// answer is a believable price.
func (o *Oracle) fetch(ctx context.Context, s Source) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "timmy-btc-oracle")
	res, err := o.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("no answer within %s", o.cfg.Timeout)
		}
		return 0, fmt.Errorf("request: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", res.StatusCode)
	}
	usd, err := s.Parse(body)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(usd) || math.IsInf(usd, 0) || usd < o.cfg.MinUSD || usd > o.cfg.MaxUSD {
		return 0, fmt.Errorf("price %v is outside the believable range %v..%v", usd, o.cfg.MinUSD, o.cfg.MaxUSD)
	}
	return usd, nil
}

// FixedPrice is a PriceOracle that always answers the same price, for
// tests and for running without any network source.
type FixedPrice struct {
	USD    float64
	Source string
}

// Price returns the fixed price.
func (f FixedPrice) Price(context.Context) (Price, error) {
	src := f.Source
	if src == "" {
		src = FallbackSource
	}
	return Price{USD: f.USD, Source: src}, nil
}
