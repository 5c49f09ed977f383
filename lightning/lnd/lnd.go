// Package lnd is Timmy's Lightning backend for an lnd node, spoken to over
// lnd's REST proxy only: the main module must not import lnd's gRPC
// packages, and REST needs nothing but a URL, a macaroon and a certificate.
// It implements every Lightning ability the service looks for: plain and
// hold invoices, push notifications and paying refunds.
//
// The REST wire format (see lnrpc/*.swagger.json and lnrpc/*.yaml in lnd's
// module) is protojson: proto field names, 64-bit integers as strings,
// bytes as standard base64 in bodies and URL-safe base64 in paths, and
// server streams as newline-delimited {"result": ...} or {"error": ...}
// objects. grpc-gateway writes a stream's HTTP headers only with its first
// message, so stream requests have no header timeout.
package lnd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/macaroon.v2"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// Defaults for the fee limits of Config, used when they are zero. They are
// lnd's own, as only this backend caps a refund's routing fee; the
// defaults of Config's durations are every backend's, in package lightning.
const (
	DefaultFeeLimitSats = timmy.Sats(10)
	DefaultFeeLimitPPM  = 5000
)

// maxBody bounds a unary response, so a misbehaving server cannot exhaust
// memory.
const maxBody = 4 << 20

// Compile-time checks of what the service may find by type assertion.
var (
	_ timmy.Lightning       = (*Client)(nil)
	_ timmy.HoldInvoices    = (*Client)(nil)
	_ timmy.InvoiceNotifier = (*Client)(nil)
	_ timmy.Payer           = (*Client)(nil)
)

// Config says how to reach and authenticate to lnd's REST port.
type Config struct {
	// URL is lnd's REST listener, e.g. https://127.0.0.1:8080. It must be
	// https: the macaroon is a bearer credential.
	URL string
	// Macaroon is the binary macaroon sent with every request. It needs
	// invoices:read, invoices:write and, to pay refunds, offchain:read and
	// offchain:write.
	Macaroon []byte
	// TLSCertPEM is lnd's tls.cert. When set it is the only trusted root,
	// which pins lnd's self-signed certificate. When empty the system roots
	// are used, for an lnd behind a proxy with a public certificate.
	TLSCertPEM []byte
	// TLSServerName overrides the name checked against the certificate,
	// for when lnd is reached by a name missing from its certificate (lnd
	// puts localhost, 127.0.0.1 and its hostname there; add more with
	// tlsextradomain).
	TLSServerName string
	// Timeout bounds each request, and the wait for a stream's first
	// message. Default lightning.DefaultTimeout.
	Timeout time.Duration
	// PayTimeout is how long lnd may try to route a refund
	// (SendPaymentV2's timeout_seconds). Default
	// lightning.DefaultPayTimeout.
	PayTimeout time.Duration
	// PayWait is how long PayInvoice waits for a final result before
	// returning the payment as pending; lnd keeps trying after that.
	// Default lightning.DefaultPayWait.
	PayWait time.Duration
	// FeeLimitSats and FeeLimitPPM cap a refund's routing fee at the larger
	// of a fixed amount and a share of the amount (parts per million).
	// Defaults DefaultFeeLimitSats and DefaultFeeLimitPPM.
	FeeLimitSats timmy.Sats
	FeeLimitPPM  int64
	// Private asks lnd to add route hints for private channels to
	// invoices, needed when the node has only private channels.
	Private bool
	// Cursors persists the settle index NotifyInvoices resumes from.
	// Default: in memory, so a restart replays nothing and the service's
	// reconcile catches up.
	Cursors CursorStore
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
}

// Client is an lnd node. It is safe for concurrent use.
type Client struct {
	cfg      Config
	base     *url.URL
	macaroon string // hex, as the Grpc-Metadata-macaroon header wants it
	http     *http.Client
	logger   *slog.Logger
	cursors  CursorStore
	holds    *holdSet
	now      func() time.Time
}

// New checks cfg, including that the macaroon parses and the certificate
// is a PEM certificate, so a misconfiguration is reported at startup. It
// does not contact lnd.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("lnd: REST URL is required (LND_REST_URL)")
	}
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("lnd: REST URL %q must be https://host:port (lnd's REST port, 8080 by default)", cfg.URL)
	}
	if len(cfg.Macaroon) == 0 {
		return nil, errors.New("lnd: a macaroon is required (LND_MACAROON_PATH or LND_MACAROON_HEX)")
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(cfg.Macaroon); err != nil {
		return nil, fmt.Errorf("lnd: the macaroon does not parse (want the binary .macaroon file or its hex): %w", err)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName}
	if len(cfg.TLSCertPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.TLSCertPEM) {
			return nil, errors.New("lnd: the TLS certificate (LND_TLS_CERT_PATH) holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	lightning.SetDefaultDurations(&cfg.Timeout, &cfg.PayTimeout, &cfg.PayWait)
	if cfg.FeeLimitSats <= 0 {
		cfg.FeeLimitSats = DefaultFeeLimitSats
	}
	if cfg.FeeLimitPPM <= 0 {
		cfg.FeeLimitPPM = DefaultFeeLimitPPM
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cursors := cfg.Cursors
	if cursors == nil {
		cursors = NewMemoryCursors()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 16
	return &Client{
		cfg:      cfg,
		base:     base,
		macaroon: hex.EncodeToString(cfg.Macaroon),
		// No client Timeout: streams live long. Every call has a context
		// deadline instead.
		http:    &http.Client{Transport: tr},
		logger:  logger,
		cursors: cursors,
		holds:   newHoldSet(),
		now:     time.Now,
	}, nil
}

// CreateInvoice adds a plain invoice (AddInvoice, POST /v1/invoices) and
// checks the BOLT11 lnd returns is for the hash and amount asked.
func (c *Client) CreateInvoice(ctx context.Context, req timmy.InvoiceRequest) (timmy.NewInvoice, error) {
	if err := lightning.CheckInvoiceRequest(req); err != nil {
		return timmy.NewInvoice{}, err
	}
	body := c.invoiceBody(req)
	var resp struct {
		RHash          []byte `json:"r_hash"`
		PaymentRequest string `json:"payment_request"`
		AddIndex       u64    `json:"add_index"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/invoices", nil, body, &resp); err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("lnd add invoice: %w", err)
	}
	var want *timmy.PaymentHash
	if len(resp.RHash) == 32 {
		h := timmy.PaymentHash(resp.RHash)
		want = &h
	}
	inv, err := checkIssued(resp.PaymentRequest, want, req.AmountSats)
	if err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("lnd add invoice: %w", err)
	}
	return inv, nil
}

// CreateHoldInvoice adds an invoice locked to the hash of preimage
// (AddHoldInvoice, POST /v2/invoices/hodl), which lnd holds once paid until
// SettleHoldInvoice or CancelHoldInvoice. This process then watches it, so
// NotifyInvoices reports it the moment it is paid.
func (c *Client) CreateHoldInvoice(ctx context.Context, req timmy.InvoiceRequest, preimage timmy.Preimage) (timmy.NewInvoice, error) {
	if err := lightning.CheckInvoiceRequest(req); err != nil {
		return timmy.NewInvoice{}, err
	}
	hash := timmy.PaymentHash(sha256.Sum256(preimage[:]))
	body := c.invoiceBody(req)
	body["hash"] = hash[:]
	var resp struct {
		PaymentRequest string `json:"payment_request"`
		AddIndex       u64    `json:"add_index"`
	}
	if err := c.call(ctx, http.MethodPost, "/v2/invoices/hodl", nil, body, &resp); err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("lnd add hold invoice: %w", err)
	}
	inv, err := checkIssued(resp.PaymentRequest, &hash, req.AmountSats)
	if err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("lnd add hold invoice: %w", err)
	}
	inv.Preimage = &preimage
	c.holds.add(hash)
	return inv, nil
}

// invoiceBody is the part of lnrpc.Invoice and AddHoldInvoiceRequest the
// two create calls share. int64 fields go as strings, as protojson writes
// them; lnd rejects unknown fields, so only real ones are sent.
func (c *Client) invoiceBody(req timmy.InvoiceRequest) map[string]any {
	body := map[string]any{
		"value": strconv.FormatInt(int64(req.AmountSats), 10),
		"memo":  req.Memo,
	}
	if req.Expiry > 0 {
		body["expiry"] = strconv.FormatInt(lightning.ExpirySeconds(req.Expiry), 10)
	}
	if c.cfg.Private {
		body["private"] = true
	}
	return body
}

// checkIssued checks the BOLT11 lnd issued as every backend does (see
// lightning.CheckIssued), and that it is for hash when one is known, so
// that a hold invoice is locked to the service's preimage.
func checkIssued(pr string, hash *timmy.PaymentHash, amount timmy.Sats) (timmy.NewInvoice, error) {
	inv, err := lightning.CheckIssued("lnd", pr, amount)
	if err != nil {
		return timmy.NewInvoice{}, err
	}
	if hash != nil && inv.PaymentHash != *hash {
		return timmy.NewInvoice{}, timmy.Errorf(timmy.EUNAVAILABLE, "lnd: returned an invoice for hash %s, not %s", inv.PaymentHash, *hash)
	}
	return inv, nil
}

// LookupInvoice reports an invoice's state (LookupInvoice, GET
// /v1/invoice/{hex hash}). How CANCELED and past-expiry invoices map is
// described on invoice.status. An unknown hash is ENOTFOUND.
func (c *Client) LookupInvoice(ctx context.Context, hash timmy.PaymentHash) (timmy.InvoiceStatus, error) {
	var inv invoice
	if err := c.call(ctx, http.MethodGet, "/v1/invoice/"+hash.String(), nil, nil, &inv); err != nil {
		return "", fmt.Errorf("lnd lookup invoice %s: %w", hash, err)
	}
	return inv.status(c.now()), nil
}

// SettleHoldInvoice takes a held payment (POST /v2/invoices/settle).
// Settling an invoice already settled succeeds, whether lnd says so
// quietly (it does since 0.15) or with "invoice already settled".
func (c *Client) SettleHoldInvoice(ctx context.Context, preimage timmy.Preimage) error {
	hash := timmy.PaymentHash(sha256.Sum256(preimage[:]))
	err := c.call(ctx, http.MethodPost, "/v2/invoices/settle", nil, map[string]any{"preimage": preimage[:]}, nil)
	var ae *apiError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.is(msgAlreadySettled):
	case errors.As(err, &ae) && ae.is(msgStillOpen):
		return fmt.Errorf("lnd settle invoice %s: %w", hash, timmy.Errorf(timmy.ECONFLICT, "cannot settle an invoice that has not been paid"))
	case errors.As(err, &ae) && ae.is(msgAlreadyCanceled):
		return fmt.Errorf("lnd settle invoice %s: %w", hash, timmy.Errorf(timmy.ECONFLICT, "cannot settle a cancelled invoice"))
	default:
		return fmt.Errorf("lnd settle invoice %s: %w", hash, err)
	}
	return nil
}

// CancelHoldInvoice gives a held payment back, or stops an unpaid invoice
// from being paid (POST /v2/invoices/cancel). Cancelling an invoice already
// cancelled succeeds; cancelling a settled one is ECONFLICT, since that
// money cannot be given back this way.
func (c *Client) CancelHoldInvoice(ctx context.Context, hash timmy.PaymentHash) error {
	err := c.call(ctx, http.MethodPost, "/v2/invoices/cancel", nil, map[string]any{"payment_hash": hash[:]}, nil)
	var ae *apiError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.is(msgAlreadyCanceled):
	case errors.As(err, &ae) && ae.is(msgAlreadySettled):
		return fmt.Errorf("lnd cancel invoice %s: %w", hash, timmy.Errorf(timmy.ECONFLICT, "cannot cancel a settled invoice"))
	default:
		return fmt.Errorf("lnd cancel invoice %s: %w", hash, err)
	}
	return nil
}

// call makes one unary request, bounded by Timeout, and decodes the JSON
// answer into out.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.send(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnd: read response to %s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return parseError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s %s returned malformed JSON: %v", method, path, err)
	}
	return nil
}

// send issues a request with the macaroon and returns the response, whose
// body the caller closes. Transport errors, TLS ones included, are
// EUNAVAILABLE.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	u := c.base.String() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := lightning.NewJSONRequest(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Grpc-Metadata-macaroon", c.macaroon)
	resp, err := c.http.Do(req)
	if err != nil {
		var cerr *tls.CertificateVerificationError
		if errors.As(err, &cerr) {
			return nil, timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s %s: the server's certificate is not the pinned lnd certificate (LND_TLS_CERT_PATH): %v", method, path, cerr.Err)
		}
		return nil, timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s %s: %v", method, path, err)
	}
	return resp, nil
}

// b64url encodes a hash for a URL path, where grpc-gateway wants URL-safe
// base64 (with padding) for bytes fields.
func b64url(h timmy.PaymentHash) string { return base64.URLEncoding.EncodeToString(h[:]) }
