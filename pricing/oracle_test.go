package pricing_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy/pricing"
)

// fakeSource is an httptest server that speaks one source's documented wire
// format. Its answer can be changed mid-test.
type fakeSource struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	status int
	body   string
	hang   bool          // wait until the client gives up
	delay  time.Duration // answer after this long

	cancelled chan struct{} // closed when a hung request's context ends
	once      sync.Once
}

func newFakeSource(t testing.TB, name string) *fakeSource {
	t.Helper()
	f := &fakeSource{name: name, status: http.StatusOK, cancelled: make(chan struct{})}
	quit := make(chan struct{})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		status, body, hang, delay := f.status, f.body, f.hang, f.delay
		f.mu.Unlock()
		if hang {
			select {
			case <-r.Context().Done():
				f.once.Do(func() { close(f.cancelled) })
			case <-quit:
			}
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(func() { close(quit); f.srv.Close() })
	return f
}

// answer sets the documented response carrying price, formatted as the
// source formats it.
func (f *fakeSource) answer(price string) {
	var body string
	switch f.name {
	case pricing.CoinGeckoName:
		body = fmt.Sprintf(`{"bitcoin":{"usd":%s}}`, price)
	case pricing.KrakenName:
		body = fmt.Sprintf(`{"error":[],"result":{"XXBTZUSD":{"a":["%[1]s","1","1.000"],"b":["%[1]s","2","2.000"],"c":["%[1]s","0.00100000"],"v":["1000.1","2000.2"],"p":["%[1]s","%[1]s"],"t":[10000,20000],"l":["%[1]s","%[1]s"],"h":["%[1]s","%[1]s"],"o":"%[1]s"}}}`, price)
	case pricing.CoinbaseName:
		body = fmt.Sprintf(`{"data":{"amount":"%s","base":"BTC","currency":"USD"}}`, price)
	}
	f.raw(http.StatusOK, body)
}

func (f *fakeSource) raw(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.hang, f.delay = status, body, false, 0
}

func (f *fakeSource) hangForever() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = true
}

func (f *fakeSource) slow(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

func (f *fakeSource) source() pricing.Source {
	s, err := pricing.SourceByName(f.name, f.srv.URL)
	if err != nil {
		panic(err)
	}
	return s
}

// clock is a hand-driven clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type oracleBundle struct {
	oracle    *pricing.Oracle
	clock     *clock
	coingecko *fakeSource
	kraken    *fakeSource
	coinbase  *fakeSource
}

// setup starts the three fake sources, all answering 60000, and an oracle
// over those named in sources, with a short timeout and a hand clock.
func setup(t testing.TB, sources []string, mod func(*pricing.OracleConfig)) oracleBundle {
	t.Helper()
	b := oracleBundle{
		clock:     &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		coingecko: newFakeSource(t, pricing.CoinGeckoName),
		kraken:    newFakeSource(t, pricing.KrakenName),
		coinbase:  newFakeSource(t, pricing.CoinbaseName),
	}
	byName := map[string]*fakeSource{
		pricing.CoinGeckoName: b.coingecko, pricing.KrakenName: b.kraken, pricing.CoinbaseName: b.coinbase,
	}
	cfg := pricing.OracleConfig{
		Timeout:     2 * time.Second,
		FallbackUSD: 50000,
		Now:         b.clock.Now,
		Logger:      slog.New(slog.DiscardHandler),
	}
	for _, f := range byName {
		f.answer("60000")
	}
	for _, n := range sources {
		cfg.Sources = append(cfg.Sources, byName[n].source())
	}
	if mod != nil {
		mod(&cfg)
	}
	o, err := pricing.NewOracle(cfg)
	require.NoError(t, err)
	b.oracle = o
	return b
}

var all3 = []string{pricing.CoinGeckoName, pricing.KrakenName, pricing.CoinbaseName}

func TestOracleReadsEachSourcesDocumentedShape(t *testing.T) {
	t.Parallel()
	for _, name := range all3 {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, []string{name}, nil)
			byName := map[string]*fakeSource{pricing.CoinGeckoName: b.coingecko, pricing.KrakenName: b.kraken, pricing.CoinbaseName: b.coinbase}
			byName[name].answer("67187.12")
			p, err := b.oracle.Price(t.Context())
			require.NoError(t, err)
			require.Equal(t, 67187.12, p.USD)
			require.Equal(t, name, p.Source)
			require.Equal(t, b.clock.Now(), p.FetchedAt)
		})
	}
}

func TestOracleDropsGarbage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		source string
		status int
		body   string
	}{
		{"non-numeric", pricing.CoinbaseName, 200, `{"data":{"amount":"lots","base":"BTC","currency":"USD"}}`},
		{"zero", pricing.CoinGeckoName, 200, `{"bitcoin":{"usd":0}}`},
		{"negative", pricing.KrakenName, 200, `{"error":[],"result":{"XXBTZUSD":{"c":["-65000.0","1"]}}}`},
		{"absurdly high", pricing.CoinGeckoName, 200, `{"bitcoin":{"usd":6.5e12}}`},
		{"absurdly low", pricing.CoinbaseName, 200, `{"data":{"amount":"0.65","base":"BTC","currency":"USD"}}`},
		{"NaN", pricing.KrakenName, 200, `{"error":[],"result":{"XXBTZUSD":{"c":["NaN","1"]}}}`},
		{"string where a number belongs", pricing.CoinGeckoName, 200, `{"bitcoin":{"usd":"sixty thousand"}}`},
		{"missing field", pricing.CoinGeckoName, 200, `{"ethereum":{"usd":3000}}`},
		{"html", pricing.CoinGeckoName, 200, `<html>Just a moment...</html>`},
		{"truncated json", pricing.CoinbaseName, 200, `{"data":{"amount":"650`},
		{"kraken error list", pricing.KrakenName, 200, `{"error":["EQuery:Unknown asset pair"]}`},
		{"wrong currency", pricing.CoinbaseName, 200, `{"data":{"amount":"60000","base":"BTC","currency":"EUR"}}`},
		{"rate limited", pricing.CoinGeckoName, 429, `{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}`},
		{"server error", pricing.KrakenName, 500, `oops`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, []string{c.source}, nil)
			byName := map[string]*fakeSource{pricing.CoinGeckoName: b.coingecko, pricing.KrakenName: b.kraken, pricing.CoinbaseName: b.coinbase}
			byName[c.source].raw(c.status, c.body)
			p, err := b.oracle.Price(t.Context())
			require.NoError(t, err)
			require.Equal(t, pricing.FallbackSource, p.Source)
			require.Equal(t, 50000.0, p.USD)
			require.Len(t, p.Answers, 1)
			require.Error(t, p.Answers[0].Err)
		})
	}
}

// The required case: three disagreeing sources, and the median one
// is used and named.
func TestOracleUsesMedianOfDisagreeingSources(t *testing.T) {
	t.Parallel()
	b := setup(t, all3, nil)
	b.coingecko.answer("60000")
	b.kraken.answer("61000")
	b.coinbase.answer("90000")
	p, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 61000.0, p.USD)
	require.Equal(t, pricing.KrakenName, p.Source)

	// The same prices in another order: the source that gave the median is
	// named, not the one in the middle of the list.
	b = setup(t, all3, nil)
	b.coingecko.answer("90000")
	b.kraken.answer("60000")
	b.coinbase.answer("61000")
	p, err = b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 61000.0, p.USD)
	require.Equal(t, pricing.CoinbaseName, p.Source)
}

func TestOracleEvenCountTakesLowerMiddle(t *testing.T) {
	t.Parallel()
	b := setup(t, all3, nil)
	b.coingecko.answer("62000")
	b.kraken.answer("61000")
	b.coinbase.raw(http.StatusServiceUnavailable, `{"errors":[{"id":"unavailable"}]}`)
	p, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 61000.0, p.USD)
	require.Equal(t, pricing.KrakenName, p.Source)
}

func TestOracleFallsBackWhenAllSourcesAreDown(t *testing.T) {
	t.Parallel()
	b := setup(t, all3, nil)
	b.coingecko.raw(http.StatusInternalServerError, "")
	b.kraken.raw(http.StatusBadGateway, "<html>bad gateway</html>")
	b.coinbase.srv.Close() // connection refused
	p, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 50000.0, p.USD)
	require.Equal(t, pricing.FallbackSource, p.Source)
	require.Len(t, p.Answers, 3)
	for _, a := range p.Answers {
		require.Error(t, a.Err, a.Source)
	}
}

// A source that never answers is given up on after the timeout: its
// request's context is cancelled, and the price comes from the others.
func TestOracleGivesUpOnHungSource(t *testing.T) {
	t.Parallel()
	b := setup(t, all3, func(c *pricing.OracleConfig) { c.Timeout = 200 * time.Millisecond })
	b.coingecko.answer("60000")
	b.kraken.hangForever()
	b.coinbase.answer("61000")
	p, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 60000.0, p.USD)
	require.Equal(t, pricing.CoinGeckoName, p.Source)
	select {
	case <-b.kraken.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the hung source's request was never cancelled")
	}
	for _, a := range p.Answers {
		if a.Source == pricing.KrakenName {
			require.ErrorContains(t, a.Err, "no answer within 200ms")
		}
	}
}

func TestOracleCachesWithinTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, []string{pricing.CoinGeckoName}, nil)
	p1, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	b.coingecko.answer("70000")
	b.clock.Advance(59 * time.Second)
	p2, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, p1, p2)
	require.EqualValues(t, 1, b.coingecko.hits.Load())

	b.clock.Advance(2 * time.Second)
	p3, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 70000.0, p3.USD)
	require.EqualValues(t, 2, b.coingecko.hits.Load())
}

func TestOracleNeverUsesPriceOlderThanMaxAge(t *testing.T) {
	t.Parallel()
	b := setup(t, []string{pricing.CoinGeckoName}, func(c *pricing.OracleConfig) {
		c.CacheTTL = time.Minute
		c.MaxAge = 10 * time.Minute
	})
	good, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 60000.0, good.USD)

	// The source dies. Past the TTL the refresh fails, and the last good
	// price, still younger than the max age, is kept.
	b.coingecko.raw(http.StatusInternalServerError, "")
	b.clock.Advance(5 * time.Minute)
	p, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, good.USD, p.USD)
	require.Equal(t, pricing.CoinGeckoName, p.Source)
	require.EqualValues(t, 2, b.coingecko.hits.Load())

	// Past the max age it is never used again.
	b.clock.Advance(5*time.Minute + time.Second)
	p, err = b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, pricing.FallbackSource, p.Source)
	require.Equal(t, 50000.0, p.USD)
	require.EqualValues(t, 3, b.coingecko.hits.Load())

	// A failed fetch is remembered for the TTL, so a dead source is not
	// waited on by every quote.
	b.clock.Advance(30 * time.Second)
	p, err = b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, pricing.FallbackSource, p.Source)
	require.EqualValues(t, 3, b.coingecko.hits.Load())

	// Once the source is back, the next refresh uses it.
	b.coingecko.answer("64000")
	b.clock.Advance(31 * time.Second)
	p, err = b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 64000.0, p.USD)
}

func TestOracleConcurrentCallersShareOneFetch(t *testing.T) {
	t.Parallel()
	b := setup(t, []string{pricing.CoinGeckoName}, nil)
	b.coingecko.slow(200 * time.Millisecond)
	var wg sync.WaitGroup
	prices := make([]pricing.Price, 20)
	for i := range prices {
		wg.Go(func() {
			p, err := b.oracle.Price(context.Background())
			if err == nil {
				prices[i] = p
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, b.coingecko.hits.Load())
	for _, p := range prices {
		require.Equal(t, 60000.0, p.USD)
	}
}

func TestOracleCallerMayGiveUpWithoutSpoilingTheFetch(t *testing.T) {
	t.Parallel()
	b := setup(t, []string{pricing.CoinGeckoName}, nil)
	b.coingecko.slow(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := b.oracle.Price(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The fetch went on for the callers still waiting, and its result is
	// cached for the next one.
	p, err := b.oracle.Price(t.Context())
	require.NoError(t, err)
	require.Equal(t, 60000.0, p.USD)
	require.EqualValues(t, 1, b.coingecko.hits.Load())
}

func TestNewOracleRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := pricing.NewOracle(pricing.OracleConfig{CacheTTL: time.Hour, MaxAge: time.Minute})
	require.ErrorContains(t, err, "shorter than the cache TTL")
	_, err = pricing.NewOracle(pricing.OracleConfig{Sources: []pricing.Source{pricing.Kraken(""), pricing.Kraken("")}})
	require.ErrorContains(t, err, "listed twice")
	_, err = pricing.NewOracle(pricing.OracleConfig{FallbackUSD: -1})
	require.ErrorContains(t, err, "fallback price")
	_, err = pricing.SourceByName("binance", "")
	require.ErrorContains(t, err, "unknown BTC price source")
}

// BenchmarkQuoteWithHungSource shows that a source which never answers
// costs a quote no more than the per-source timeout (100ms here): ns/op
// stays just above 1e8 however long the source would hang. Every iteration
// refreshes, because the clock moves past the cache TTL each time.
func BenchmarkQuoteWithHungSource(b *testing.B) {
	const timeout = 100 * time.Millisecond
	bundle := setup(b, all3, func(c *pricing.OracleConfig) { c.Timeout = timeout })
	bundle.kraken.hangForever()
	model, err := pricing.New(pricing.DefaultConfig(bundle.oracle))
	require.NoError(b, err)
	for b.Loop() {
		bundle.clock.Advance(pricing.DefaultCacheTTL)
		q, err := model.QuoteWork(context.Background(), "write a haiku about sats", "claude-sonnet-4-5")
		if err != nil || q.BTCPriceSource == pricing.FallbackSource {
			b.Fatalf("quote: %v, source %q", err, q.BTCPriceSource)
		}
	}
	b.ReportMetric(float64(timeout.Nanoseconds()), "timeout-ns")
}
