// Package lnbits is Timmy's Lightning backend for an LNbits wallet, spoken
// to over LNbits' v1 REST API (and read-compatible with the older 0.x
// responses). LNbits has no hold invoices, so a buyer whose paid work fails
// is refunded by paying an invoice they send; that is why the client also
// pays invoices, with the wallet's admin key.
//
// Decisions worth knowing:
//   - An invoice LNbits reports as failed is reported as expired. LNbits
//     marks an incoming invoice failed when its funding source gave up on it,
//     which for an unpaid invoice means it expired. An unpaid invoice whose
//     BOLT11 expiry passed more than lightning.ExpiryGrace ago is also expired, even if
//     LNbits has not yet looked at it.
//   - The payment websocket is only a hint: every payment hash it carries
//     is passed on, and the service confirms with LookupInvoice.
//   - PayInvoice never reports a failure without asking LNbits about the
//     payment hash first, so that a repeated attempt refused by LNbits cannot
//     hide a first attempt that went through.
package lnbits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// maxBody bounds what is read from LNbits, so a misbehaving server cannot
// exhaust memory.
const maxBody = 1 << 20

// Compile-time checks of what the service may find by type assertion.
var (
	_ timmy.Lightning       = (*Client)(nil)
	_ timmy.InvoiceNotifier = (*Client)(nil)
	_ timmy.Payer           = (*Client)(nil)
)

// Config selects an LNbits wallet and how patiently to talk to it.
type Config struct {
	// URL is the LNbits server, e.g. https://lnbits.example.com.
	URL string
	// InvoiceKey is the wallet's invoice/read key. It creates and reads
	// invoices and is sent as X-Api-Key.
	InvoiceKey string
	// AdminKey is the wallet's admin key, needed only to pay refunds. When
	// it is empty PayInvoice fails with a clear error; LookupPayment needs
	// only the invoice key.
	AdminKey string
	// Timeout bounds each ordinary request. Default
	// lightning.DefaultTimeout.
	Timeout time.Duration
	// PayTimeout bounds the request that pays an invoice, which LNbits
	// holds open while its funding source routes the payment. Default
	// lightning.DefaultPayTimeout.
	PayTimeout time.Duration
	// PayWait is how long PayInvoice polls a payment LNbits reports as
	// pending before returning it as pending. Default
	// lightning.DefaultPayWait.
	PayWait time.Duration
	// HTTPClient is used for every request when set; its Timeout is
	// ignored in favour of the timeouts above.
	HTTPClient *http.Client
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
}

// Client is an LNbits wallet. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   *url.URL
	http   *http.Client
	logger *slog.Logger
	now    func() time.Time
	ping   pinging
}

// New checks cfg and returns a client. It does not contact LNbits, so the
// service can start while LNbits is down.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("lnbits: URL is required (LNBITS_URL)")
	}
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("lnbits: URL %q must be an http(s) URL like https://lnbits.example.com", cfg.URL)
	}
	if cfg.InvoiceKey == "" {
		return nil, errors.New("lnbits: the wallet's invoice key is required (LNBITS_API_KEY)")
	}
	lightning.SetDefaultDurations(&cfg.Timeout, &cfg.PayTimeout, &cfg.PayWait)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	// Requests are bounded by contexts; a client-wide Timeout would also cut
	// the websocket, so it is dropped from a copy.
	c2 := *hc
	c2.Timeout = 0
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg: cfg, base: base, http: &c2, logger: logger, now: time.Now,
		ping: pinging{every: pingEvery, timeout: pingTimeout},
	}, nil
}

// CreateInvoice asks LNbits for an invoice and checks that the BOLT11 it
// returns is for the hash and amount asked, so a misbehaving backend cannot
// make the service sell work for the wrong price.
func (c *Client) CreateInvoice(ctx context.Context, req timmy.InvoiceRequest) (timmy.NewInvoice, error) {
	if err := lightning.CheckInvoiceRequest(req); err != nil {
		return timmy.NewInvoice{}, err
	}
	body := map[string]any{
		"out":    false,
		"amount": int64(req.AmountSats),
		"unit":   "sat",
		"memo":   req.Memo,
	}
	if req.Expiry > 0 {
		body["expiry"] = lightning.ExpirySeconds(req.Expiry)
	}
	var resp struct {
		PaymentHash    string `json:"payment_hash"`
		Bolt11         string `json:"bolt11"`          // v1
		PaymentRequest string `json:"payment_request"` // before v1
	}
	if err := c.do(ctx, c.cfg.Timeout, http.MethodPost, "/api/v1/payments", c.cfg.InvoiceKey, body, &resp); err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("lnbits create invoice: %w", err)
	}
	pr := resp.Bolt11
	if pr == "" {
		pr = resp.PaymentRequest
	}
	if pr == "" {
		return timmy.NewInvoice{}, timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: created an invoice but returned no bolt11")
	}
	inv, err := lightning.CheckIssued("lnbits", pr, req.AmountSats)
	if err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("lnbits create invoice: %w", err)
	}
	if resp.PaymentHash != "" && !strings.EqualFold(resp.PaymentHash, inv.PaymentHash.String()) {
		return timmy.NewInvoice{}, fmt.Errorf("lnbits create invoice: %w", timmy.Errorf(timmy.EUNAVAILABLE,
			"lnbits: returned payment hash %s for an invoice whose hash is %s", resp.PaymentHash, inv.PaymentHash))
	}
	return inv, nil
}

// LookupInvoice reports an incoming invoice's state. See the package
// comment for how expiry is decided.
func (c *Client) LookupInvoice(ctx context.Context, hash timmy.PaymentHash) (timmy.InvoiceStatus, error) {
	p, err := c.payment(ctx, hash)
	if err != nil {
		return "", fmt.Errorf("lnbits lookup invoice %s: %w", hash, err)
	}
	switch p.state() {
	case stateSuccess:
		return timmy.InvoiceSettled, nil
	case stateFailed:
		return timmy.InvoiceExpired, nil
	}
	if exp, ok := p.expiresAt(); ok && lightning.Lapsed(exp, c.now()) {
		return timmy.InvoiceExpired, nil
	}
	return timmy.InvoiceOpen, nil
}

// CanPay reports whether refunds can be paid: only with the admin key.
func (c *Client) CanPay() bool { return c.cfg.AdminKey != "" }

var _ timmy.PayerStatus = (*Client)(nil)

// PayInvoice pays a buyer's refund invoice with the admin key. The invoice
// is decoded and checked first: it must be for exactly amountSats and not
// about to expire, or an EINVALID error is returned and nothing is paid.
//
// A payment LNbits definitely did not make (it refused the invoice, or the
// funding source failed it) is returned as failed with a nil error, so the
// buyer can claim again with a new invoice. Any other error (LNbits
// unreachable, a bad or missing admin key) leaves the outcome to be learnt
// with LookupPayment, where not found means no attempt was made.
func (c *Client) PayInvoice(ctx context.Context, paymentRequest string, amountSats timmy.Sats) (timmy.Payment, error) {
	d, err := lightning.ValidatePayable(paymentRequest, amountSats, c.now())
	if err != nil {
		return timmy.Payment{}, err
	}
	if c.cfg.AdminKey == "" {
		return timmy.Payment{}, timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: paying refunds needs the wallet's admin key (LNBITS_ADMIN_KEY)")
	}
	var resp paymentDetails
	body := map[string]any{"out": true, "bolt11": paymentRequest}
	err = c.do(ctx, c.cfg.PayTimeout, http.MethodPost, "/api/v1/payments", c.cfg.AdminKey, body, &resp)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || !ae.refused() {
			return timmy.Payment{}, fmt.Errorf("lnbits pay invoice %s: %w", d.PaymentHash, err)
		}
		// LNbits refused the invoice or says the payment failed. A repeat
		// of a payment already made is refused too, so the hash decides.
		p, lerr := c.LookupPayment(ctx, d.PaymentHash)
		switch {
		case lerr == nil && p.State != timmy.PaymentFailed:
			return p, nil
		case lerr != nil && timmy.ErrorCode(lerr) != timmy.ENOTFOUND && ae.status == statusFundingSource && ae.payState != stateFailed:
			// The funding source failed in a way LNbits could not classify
			// and the payment cannot be looked up: it may be in flight.
			c.logger.Warn("lnbits payment outcome unknown", "hash", d.PaymentHash.String(), "err", err, "lookup_err", lerr)
			return timmy.Payment{Hash: d.PaymentHash, State: timmy.PaymentPending}, nil
		}
		return timmy.Payment{Hash: d.PaymentHash, State: timmy.PaymentFailed, FailureReason: ae.detail}, nil
	}
	p := resp.payment(d.PaymentHash)
	if p.State != timmy.PaymentPending {
		return p, nil
	}
	return c.waitPayment(ctx, p)
}

// waitPayment polls a pending payment for up to PayWait, so a payment that
// settles within moments is reported final without a second round trip.
func (c *Client) waitPayment(ctx context.Context, p timmy.Payment) (timmy.Payment, error) {
	const every = 250 * time.Millisecond
	deadline := time.NewTimer(c.cfg.PayWait)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return p, nil
		case <-deadline.C:
			return p, nil
		case <-tick.C:
			q, err := c.LookupPayment(ctx, p.Hash)
			if err != nil {
				c.logger.Debug("lnbits poll pending payment", "hash", p.Hash.String(), "err", err)
				continue
			}
			if q.State != timmy.PaymentPending {
				return q, nil
			}
		}
	}
}

// LookupPayment reports an outgoing payment by its hash. A hash LNbits does
// not know is an ENOTFOUND error.
func (c *Client) LookupPayment(ctx context.Context, hash timmy.PaymentHash) (timmy.Payment, error) {
	p, err := c.payment(ctx, hash)
	if err != nil {
		return timmy.Payment{}, fmt.Errorf("lnbits lookup payment %s: %w", hash, err)
	}
	out := timmy.Payment{Hash: hash, State: timmy.PaymentPending}
	switch p.state() {
	case stateSuccess:
		out.State = timmy.PaymentSucceeded
	case stateFailed:
		out.State = timmy.PaymentFailed
		out.FailureReason = "lnbits reports the payment failed"
	}
	if p.Details != nil {
		out.FeeSats = p.Details.Fee.sats()
	}
	return out, nil
}

// payment fetches GET /api/v1/payments/{hash}.
func (c *Client) payment(ctx context.Context, hash timmy.PaymentHash) (*paymentStatus, error) {
	var p paymentStatus
	if err := c.do(ctx, c.cfg.Timeout, http.MethodGet, "/api/v1/payments/"+hash.String(), c.cfg.InvoiceKey, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// do sends one JSON request and decodes a 2xx JSON response into out. Any
// other status becomes an *apiError carrying a coded timmy error.
func (c *Client) do(ctx context.Context, timeout time.Duration, method, path, key string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := lightning.NewJSONRequest(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: %s %s: %s", method, path, redact(err.Error(), c.cfg.InvoiceKey, c.cfg.AdminKey))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: read response to %s %s: %v", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return parseError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnbits: %s %s returned malformed JSON: %v", method, path, err)
	}
	return nil
}

// redact removes API keys from text that may end up in logs, such as a
// transport error quoting the websocket URL, which contains the key.
func redact(s string, keys ...string) string {
	for _, k := range keys {
		if k != "" {
			s = strings.ReplaceAll(s, k, "<redacted>")
		}
	}
	return s
}
