package pricing

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The public BTC/USD sources the oracle knows by name, with their
// production base URLs. None needs an API key.
const (
	CoinGeckoName = "coingecko"
	KrakenName    = "kraken"
	CoinbaseName  = "coinbase"

	CoinGeckoBaseURL = "https://api.coingecko.com"
	KrakenBaseURL    = "https://api.kraken.com"
	CoinbaseBaseURL  = "https://api.coinbase.com"
)

// SourceNames lists the known sources in the order they are documented.
var SourceNames = []string{CoinGeckoName, KrakenName, CoinbaseName}

// Source is one public price API: where to GET the price and how to read
// it from the response body.
type Source struct {
	// Name identifies the source in btcPriceSource and in logs.
	Name string
	// URL is the full URL to GET.
	URL string
	// Parse reads the BTC price in USD from a 200 response's body. It
	// returns an error for any body that is not the documented shape.
	Parse func(body []byte) (float64, error)
}

// CoinGecko reads /api/v3/simple/price?ids=bitcoin&vs_currencies=usd,
// which answers {"bitcoin":{"usd":67187.12}}. An empty baseURL means
// CoinGeckoBaseURL.
func CoinGecko(baseURL string) Source {
	return Source{
		Name:  CoinGeckoName,
		URL:   base(baseURL, CoinGeckoBaseURL) + "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd",
		Parse: parseCoinGecko,
	}
}

func parseCoinGecko(body []byte) (float64, error) {
	var r struct {
		Bitcoin *struct {
			USD *json.Number `json:"usd"`
		} `json:"bitcoin"`
	}
	if err := decodeJSON(body, &r); err != nil {
		return 0, err
	}
	if r.Bitcoin == nil || r.Bitcoin.USD == nil {
		return 0, errors.New("no bitcoin.usd in response")
	}
	return parseNumber(r.Bitcoin.USD.String())
}

// Kraken reads /0/public/Ticker?pair=XBTUSD, which answers
// {"error":[],"result":{"XXBTZUSD":{"c":["67187.10000","0.001"],...}}};
// the price is the last trade ("c"). An empty baseURL means KrakenBaseURL.
func Kraken(baseURL string) Source {
	return Source{
		Name:  KrakenName,
		URL:   base(baseURL, KrakenBaseURL) + "/0/public/Ticker?pair=XBTUSD",
		Parse: parseKraken,
	}
}

func parseKraken(body []byte) (float64, error) {
	var r struct {
		Error  []string `json:"error"`
		Result map[string]struct {
			C []string `json:"c"`
		} `json:"result"`
	}
	if err := decodeJSON(body, &r); err != nil {
		return 0, err
	}
	if len(r.Error) > 0 {
		return 0, fmt.Errorf("kraken error: %s", strings.Join(r.Error, "; "))
	}
	if len(r.Result) != 1 {
		return 0, fmt.Errorf("want exactly one pair in result, got %d", len(r.Result))
	}
	var last []string
	for _, t := range r.Result {
		last = t.C
	}
	if len(last) == 0 {
		return 0, errors.New("no last trade price (c) in result")
	}
	return parseNumber(last[0])
}

// Coinbase reads /v2/prices/BTC-USD/spot, which answers
// {"data":{"amount":"67187.12","base":"BTC","currency":"USD"}}. An empty
// baseURL means CoinbaseBaseURL.
func Coinbase(baseURL string) Source {
	return Source{
		Name:  CoinbaseName,
		URL:   base(baseURL, CoinbaseBaseURL) + "/v2/prices/BTC-USD/spot",
		Parse: parseCoinbase,
	}
}

func parseCoinbase(body []byte) (float64, error) {
	var r struct {
		Data *struct {
			Amount   string `json:"amount"`
			Base     string `json:"base"`
			Currency string `json:"currency"`
		} `json:"data"`
	}
	if err := decodeJSON(body, &r); err != nil {
		return 0, err
	}
	if r.Data == nil {
		return 0, errors.New("no data in response")
	}
	if r.Data.Base != "BTC" || r.Data.Currency != "USD" {
		return 0, fmt.Errorf("price is for %s-%s, not BTC-USD", r.Data.Base, r.Data.Currency)
	}
	return parseNumber(r.Data.Amount)
}

// SourceByName returns the known source called name, with baseURL
// overriding its production base URL when it is not empty.
func SourceByName(name, baseURL string) (Source, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case CoinGeckoName:
		return CoinGecko(baseURL), nil
	case KrakenName:
		return Kraken(baseURL), nil
	case CoinbaseName:
		return Coinbase(baseURL), nil
	}
	known := append([]string(nil), SourceNames...)
	sort.Strings(known)
	return Source{}, fmt.Errorf("unknown BTC price source %q (known: %s)", name, strings.Join(known, ", "))
}

func base(u, def string) string {
	if u == "" {
		u = def
	}
	return strings.TrimRight(u, "/")
}

func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// parseNumber reads a decimal price. Validation of its range is the
// oracle's job, so that every source is held to the same bounds.
func parseNumber(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("price %q is not a number", s)
	}
	return f, nil
}
