// Package lndtest runs a fake lnd REST server for tests. It speaks the wire
// format of lnd v0.18's REST proxy as the lnd client uses it: protojson
// bodies (int64 as strings, bytes as base64, unknown fields rejected),
// grpc-gateway errors ({"code","message","details"}, and {"error": ...} for
// streams), newline-delimited {"result": ...} streams whose headers come
// with the first message, TLS with its own freshly generated self-signed
// certificate, and a macaroon checked on every request. Invoices are real
// BOLT11 signed by a throwaway regtest key.
//
// Typical use:
//
//	fake := lndtest.New(t)
//	client, _ := lnd.New(lnd.Config{URL: fake.URL, Macaroon: fake.Macaroon, TLSCertPEM: fake.CertPEM})
//	inv, _ := client.CreateHoldInvoice(ctx, req, preimage)
//	fake.MarkPaid(inv.PaymentHash) // the buyer pays: the hold invoice is ACCEPTED
//	... client.SettleHoldInvoice(ctx, preimage)
package lndtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"
	"gopkg.in/macaroon.v2"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning/lightningtest"
)

// PayMode decides what happens to the node's outgoing payments.
type PayMode int

// The pay modes.
const (
	// PaySucceed settles outgoing payments at once (the default).
	PaySucceed PayMode = iota
	// PayFail fails them with FAILURE_REASON_NO_ROUTE.
	PayFail
	// PayPending leaves them IN_FLIGHT until ResolvePayment.
	PayPending
)

// The invoice states, as lnd names them.
const (
	StateOpen     = "OPEN"
	StateAccepted = "ACCEPTED"
	StateSettled  = "SETTLED"
	StateCanceled = "CANCELED"
)

// InvoiceOptions describes a buyer's invoice for BuyerInvoiceWith. It is
// lightningtest's, so every fake's buyer makes invoices alike.
type InvoiceOptions = lightningtest.InvoiceOptions

// Invoice is an invoice the fake node issued.
type Invoice struct {
	Hash           timmy.PaymentHash
	Preimage       *timmy.Preimage // nil for a hold invoice until it is settled
	PaymentRequest string
	AmountSats     timmy.Sats
	Memo           string
	Hold           bool
	State          string
	AddIndex       uint64
	SettleIndex    uint64
	CreatedAt      time.Time
	Expiry         time.Duration
	// HTLCStates lists the states of the HTLCs that paid it, empty if
	// unpaid.
	HTLCStates []string
}

// Payment is an outgoing payment the fake node made.
type Payment struct {
	Hash           timmy.PaymentHash
	PaymentRequest string
	AmountSats     timmy.Sats
	FeeSats        timmy.Sats
	FeeLimitSats   timmy.Sats
	TimeoutSeconds int64
	// Status is lnd's: IN_FLIGHT, SUCCEEDED or FAILED.
	Status        string
	FailureReason string
	// Attempts counts SendPaymentV2 calls for this hash that lnd accepted.
	Attempts int
}

// Option configures a Fake.
type Option func(*Fake)

// WithPayMode sets how outgoing payments end.
func WithPayMode(m PayMode) Option { return func(f *Fake) { f.payMode = m } }

// WithFeeSats sets the routing fee of each successful payment.
func WithFeeSats(fee timmy.Sats) Option { return func(f *Fake) { f.feeSats = fee } }

// Fake is a running fake lnd. It is safe for concurrent use.
type Fake struct {
	// Buyer makes the invoices a buyer sends to claim a refund:
	// fake.BuyerInvoice(21), or fake.BuyerInvoiceWith for an expired,
	// amountless or mainnet one.
	*lightningtest.Buyer

	// URL is the REST base URL, for LND_REST_URL.
	URL string
	// CertPEM is the server's self-signed certificate, and CertPath a file
	// holding it, for LND_TLS_CERT_PATH.
	CertPEM  []byte
	CertPath string
	// Macaroon is the binary macaroon the server accepts; MacaroonHex and
	// MacaroonPath hold it for LND_MACAROON_HEX and LND_MACAROON_PATH.
	Macaroon     []byte
	MacaroonHex  string
	MacaroonPath string

	t       testing.TB
	srv     *httptest.Server
	node    *lightningtest.Node
	canned  lightningtest.Canned
	feeSats timmy.Sats

	mu          sync.Mutex
	payMode     PayMode
	invoices    map[timmy.PaymentHash]*Invoice
	byAdd       []*Invoice
	addIndex    uint64
	settleIndex uint64
	payments    map[timmy.PaymentHash]*Payment
	payOrder    []timmy.PaymentHash
	payIndex    uint64
	allSubs     map[*sub]struct{}
	singleSubs  map[timmy.PaymentHash]map[*sub]struct{}
	paySubs     map[timmy.PaymentHash]map[*sub]struct{}
	kill        chan struct{}
}

type sub struct{ ch chan map[string]any }

// New starts a fake lnd that stops when the test ends.
func New(t testing.TB, opts ...Option) *Fake {
	t.Helper()
	cert, certPEM, err := SelfSignedCert()
	if err != nil {
		t.Fatalf("lndtest: %v", err)
	}
	rootKey := make([]byte, 32)
	_, _ = rand.Read(rootKey)
	m, err := macaroon.New(rootKey, []byte("0"), "lnd", macaroon.LatestVersion)
	if err != nil {
		t.Fatalf("lndtest: macaroon: %v", err)
	}
	mac, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("lndtest: macaroon: %v", err)
	}
	dir := t.TempDir()
	f := &Fake{
		Buyer:        lightningtest.NewBuyer(t),
		CertPEM:      certPEM,
		CertPath:     filepath.Join(dir, "tls.cert"),
		Macaroon:     mac,
		MacaroonHex:  hex.EncodeToString(mac),
		MacaroonPath: filepath.Join(dir, "admin.macaroon"),
		t:            t,
		node:         lightningtest.NewNode(t),
		invoices:     map[timmy.PaymentHash]*Invoice{},
		payments:     map[timmy.PaymentHash]*Payment{},
		allSubs:      map[*sub]struct{}{},
		singleSubs:   map[timmy.PaymentHash]map[*sub]struct{}{},
		paySubs:      map[timmy.PaymentHash]map[*sub]struct{}{},
		kill:         make(chan struct{}),
	}
	for _, o := range opts {
		o(f)
	}
	if err := os.WriteFile(f.CertPath, certPEM, 0o600); err != nil {
		t.Fatalf("lndtest: %v", err)
	}
	if err := os.WriteFile(f.MacaroonPath, mac, 0o600); err != nil {
		t.Fatalf("lndtest: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/invoices", f.handleAddInvoice)
	mux.HandleFunc("GET /v1/invoice/{r_hash_str}", f.handleLookup)
	mux.HandleFunc("GET /v2/invoices/lookup", f.handleLookup)
	mux.HandleFunc("GET /v1/invoices/subscribe", f.handleSubscribe)
	mux.HandleFunc("GET /v2/invoices/subscribe/{r_hash}", f.handleSubscribeSingle)
	mux.HandleFunc("POST /v2/invoices/hodl", f.handleAddHold)
	mux.HandleFunc("POST /v2/invoices/settle", f.handleSettle)
	mux.HandleFunc("POST /v2/invoices/cancel", f.handleCancel)
	mux.HandleFunc("POST /v2/router/send", f.handleSend)
	mux.HandleFunc("GET /v2/router/track/{payment_hash}", f.handleTrack)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, 5, "Not Found")
	})
	f.srv = httptest.NewUnstartedServer(f.auth(mux))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Clients with the wrong pin fail the handshake on purpose in tests.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	f.URL = f.srv.URL
	t.Cleanup(func() {
		f.CloseStreams()
		f.srv.Close()
	})
	return f
}

// SelfSignedCert makes a certificate like the one lnd generates for its
// RPC and REST listeners: self-signed, a CA, for localhost, 127.0.0.1 and
// ::1. Each call makes a new key, so two fakes never trust each other.
func SelfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"lnd autogenerated cert"}, CommonName: "lndtest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

// Env returns the variables that point Timmy at this fake.
func (f *Fake) Env() map[string]string {
	return map[string]string{
		"LND_REST_URL":      f.URL,
		"LND_MACAROON_PATH": f.MacaroonPath,
		"LND_TLS_CERT_PATH": f.CertPath,
	}
}

// FailNext makes the next request answer with status and body instead,
// e.g. 500 and {"code":2,"message":"invoice already settled","details":[]}.
// Calls queue up.
func (f *Fake) FailNext(status int, body string) { f.canned.Add(status, body) }

// SetPayMode changes how later outgoing payments end.
func (f *Fake) SetPayMode(m PayMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.payMode = m
}

// MarkPaid records that a buyer paid the invoice with this hash: a plain
// invoice is SETTLED (and gets the next settle index), a hold invoice is
// ACCEPTED, waiting for the service to settle or cancel it. Subscribers
// hear of it as they would from lnd: SubscribeInvoices only of
// settlements, SubscribeSingleInvoice of both. It fails the test if the
// invoice is not OPEN, since lnd would refuse the payment.
func (f *Fake) MarkPaid(hash timmy.PaymentHash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invoices[hash]
	if !ok || inv.State != StateOpen {
		f.t.Errorf("lndtest: MarkPaid: no open invoice %s", hash)
		return
	}
	if inv.Hold {
		inv.State = StateAccepted
		inv.HTLCStates = []string{StateAccepted}
		f.notifyLocked(inv)
		return
	}
	inv.HTLCStates = []string{StateSettled}
	f.settleLocked(inv)
}

// Expire cancels an unpaid invoice as lnd's expiry watcher does.
func (f *Fake) Expire(hash timmy.PaymentHash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invoices[hash]
	if !ok || inv.State != StateOpen {
		f.t.Errorf("lndtest: Expire: no open invoice %s", hash)
		return
	}
	inv.State = StateCanceled
	f.notifyLocked(inv)
}

// Delete forgets an invoice, as lnd's DeleteCanceledInvoice does (here in
// any state), so a test can see how a client copes with an invoice lnd no
// longer knows.
func (f *Fake) Delete(hash timmy.PaymentHash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.invoices, hash)
	f.byAdd = slices.DeleteFunc(f.byAdd, func(inv *Invoice) bool { return inv.Hash == hash })
}

// Invoice returns the invoice with this hash.
func (f *Fake) Invoice(hash timmy.PaymentHash) (Invoice, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invoices[hash]
	if !ok {
		return Invoice{}, false
	}
	c := *inv
	c.HTLCStates = slices.Clone(inv.HTLCStates)
	return c, true
}

// State returns the invoice's lnd state, or "" if there is none.
func (f *Fake) State(hash timmy.PaymentHash) string {
	inv, _ := f.Invoice(hash)
	return inv.State
}

// Payments lists outgoing payments in the order they were first made.
func (f *Fake) Payments() []Payment {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Payment, 0, len(f.payOrder))
	for _, h := range f.payOrder {
		out = append(out, *f.payments[h])
	}
	return out
}

// ResolvePayment ends an IN_FLIGHT payment as succeeded or failed.
func (f *Fake) ResolvePayment(hash timmy.PaymentHash, succeeded bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.payments[hash]
	if !ok || p.Status != "IN_FLIGHT" {
		f.t.Errorf("lndtest: ResolvePayment: no payment in flight %s", hash)
		return
	}
	if succeeded {
		p.Status, p.FeeSats = "SUCCEEDED", f.feeSats
	} else {
		p.Status, p.FailureReason = "FAILED", "FAILURE_REASON_NO_ROUTE"
	}
	f.payNotifyLocked(p)
}

// CloseStreams ends every open stream, as an lnd restart would.
func (f *Fake) CloseStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.kill)
	f.kill = make(chan struct{})
}

// Subscribers counts open SubscribeInvoices streams, so a test can wait
// for its listener before causing a payment.
func (f *Fake) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.allSubs)
}

// SingleSubscribers counts open SubscribeSingleInvoice streams for hash.
func (f *Fake) SingleSubscribers(hash timmy.PaymentHash) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.singleSubs[hash])
}

// auth serves queued FailNext answers, then checks the macaroon as lnd
// does: its interceptor fails with gRPC code 2, which grpc-gateway turns
// into HTTP 500.
func (f *Fake) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.canned.Serve(w) {
			return
		}
		switch mac := r.Header.Get("Grpc-Metadata-macaroon"); mac {
		case f.MacaroonHex:
			next.ServeHTTP(w, r)
		case "":
			writeStatus(w, http.StatusInternalServerError, 2, "expected 1 macaroon, got 0")
		default:
			writeStatus(w, http.StatusInternalServerError, 2, "verification failed: signature mismatch after caveat verification")
		}
	})
}

func (f *Fake) handleAddInvoice(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, "memo", "value", "value_msat", "expiry", "private", "r_preimage")
	if err != nil {
		writeStatus(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	var pre timmy.Preimage
	_, _ = rand.Read(pre[:])
	inv, err := f.addInvoice(body, sha256.Sum256(pre[:]), false)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, 2, err.Error())
		return
	}
	f.mu.Lock()
	inv.Preimage = &pre
	resp := map[string]any{
		"r_hash":          b64(inv.Hash[:]),
		"payment_request": inv.PaymentRequest,
		"add_index":       u(inv.AddIndex),
		"payment_addr":    b64(make([]byte, 32)),
	}
	f.mu.Unlock()
	lightningtest.WriteJSON(w, http.StatusOK, resp)
}

func (f *Fake) handleAddHold(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, "memo", "hash", "value", "value_msat", "expiry", "private", "cltv_expiry")
	if err != nil {
		writeStatus(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	hb, err := body.bytes("hash")
	if err != nil || len(hb) != 32 {
		writeStatus(w, http.StatusInternalServerError, 2, "invalid hash length")
		return
	}
	inv, err := f.addInvoice(body, timmy.PaymentHash(hb), true)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, 2, err.Error())
		return
	}
	f.mu.Lock()
	resp := map[string]any{"payment_request": inv.PaymentRequest, "add_index": u(inv.AddIndex), "payment_addr": b64(make([]byte, 32))}
	f.mu.Unlock()
	lightningtest.WriteJSON(w, http.StatusOK, resp)
}

// addInvoice signs and records an invoice, as AddInvoice and
// AddHoldInvoice do.
func (f *Fake) addInvoice(body fields, hash timmy.PaymentHash, hold bool) (*Invoice, error) {
	sats, err := body.int("value")
	if err != nil {
		return nil, err
	}
	expiry, err := body.int("expiry")
	if err != nil {
		return nil, err
	}
	if expiry == 0 {
		expiry = 86400 // lnd's default
	}
	memo := body.string("memo")
	created := time.Now().Truncate(time.Second)
	pr, err := f.node.SignHash(hash, InvoiceOptions{AmountMsat: sats * 1000, CreatedAt: created, Expiry: time.Duration(expiry) * time.Second, Memo: memo})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.invoices[hash]; dup {
		return nil, fmt.Errorf("invoice with payment hash already exists")
	}
	f.addIndex++
	inv := &Invoice{
		Hash: hash, PaymentRequest: pr, AmountSats: timmy.Sats(sats), Memo: memo, Hold: hold,
		State: StateOpen, AddIndex: f.addIndex, CreatedAt: created, Expiry: time.Duration(expiry) * time.Second,
	}
	f.invoices[hash] = inv
	f.byAdd = append(f.byAdd, inv)
	for s := range f.allSubs {
		s.send(f.invoiceJSON(inv))
	}
	return inv, nil
}

func (f *Fake) handleLookup(w http.ResponseWriter, r *http.Request) {
	var hb []byte
	var err error
	if s := r.PathValue("r_hash_str"); s != "" {
		hb, err = hex.DecodeString(s)
	} else {
		hb, err = decodeB64(r.URL.Query().Get("payment_hash"))
	}
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, 2, err.Error())
		return
	}
	if len(hb) != 32 {
		writeStatus(w, http.StatusInternalServerError, 2, fmt.Sprintf("payment hash must be exactly 32 bytes, is instead %d", len(hb)))
		return
	}
	f.mu.Lock()
	inv, ok := f.invoices[timmy.PaymentHash(hb)]
	var resp map[string]any
	if ok {
		resp = f.invoiceJSON(inv)
	}
	f.mu.Unlock()
	if !ok {
		writeStatus(w, http.StatusNotFound, 5, "unable to locate invoice")
		return
	}
	lightningtest.WriteJSON(w, http.StatusOK, resp)
}

func (f *Fake) handleSettle(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, "preimage")
	if err != nil {
		writeStatus(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	pb, err := body.bytes("preimage")
	if err != nil || len(pb) != 32 {
		writeStatus(w, http.StatusInternalServerError, 2, "invalid preimage length")
		return
	}
	pre := timmy.Preimage(pb)
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invoices[sha256.Sum256(pb)]
	switch {
	case !ok:
		writeStatus(w, http.StatusInternalServerError, 2, "unable to locate invoice")
		return
	case inv.State == StateOpen:
		writeStatus(w, http.StatusInternalServerError, 2, "invoice still open")
		return
	case inv.State == StateCanceled:
		writeStatus(w, http.StatusInternalServerError, 2, "invoice already canceled")
		return
	case inv.State == StateAccepted:
		inv.Preimage = &pre
		inv.HTLCStates = []string{StateSettled}
		f.settleLocked(inv)
	}
	// Settling a settled invoice succeeds, as in lnd.
	lightningtest.WriteJSON(w, http.StatusOK, map[string]any{})
}

func (f *Fake) handleCancel(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, "payment_hash")
	if err != nil {
		writeStatus(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	hb, err := body.bytes("payment_hash")
	if err != nil || len(hb) != 32 {
		writeStatus(w, http.StatusInternalServerError, 2, "invalid hash length")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invoices[timmy.PaymentHash(hb)]
	switch {
	case !ok:
		writeStatus(w, http.StatusInternalServerError, 2, "unable to locate invoice")
		return
	case inv.State == StateSettled:
		writeStatus(w, http.StatusInternalServerError, 2, "invoice already settled")
		return
	case inv.State == StateOpen || inv.State == StateAccepted:
		inv.State = StateCanceled
		for i := range inv.HTLCStates {
			inv.HTLCStates[i] = StateCanceled
		}
		f.notifyLocked(inv)
	}
	// Cancelling a cancelled invoice succeeds, as in lnd.
	lightningtest.WriteJSON(w, http.StatusOK, map[string]any{})
}

// handleSubscribe is SubscribeInvoices: first the backlog asked for by
// add_index and settle_index, then every add and settle as it happens.
func (f *Fake) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addIdx, err1 := parseUint(q.Get("add_index"))
	settleIdx, err2 := parseUint(q.Get("settle_index"))
	if err1 != nil || err2 != nil {
		writeStatus(w, http.StatusBadRequest, 3, "invalid index")
		return
	}
	s := &sub{ch: make(chan map[string]any, 256)}
	f.mu.Lock()
	var backlog []map[string]any
	if addIdx > 0 {
		for _, inv := range f.byAdd {
			if inv.AddIndex > addIdx {
				backlog = append(backlog, f.invoiceJSON(inv))
			}
		}
	}
	if settleIdx > 0 {
		var settled []*Invoice
		for _, inv := range f.byAdd {
			if inv.SettleIndex > settleIdx {
				settled = append(settled, inv)
			}
		}
		slices.SortFunc(settled, func(a, b *Invoice) int { return int(a.SettleIndex) - int(b.SettleIndex) })
		for _, inv := range settled {
			backlog = append(backlog, f.invoiceJSON(inv))
		}
	}
	f.allSubs[s] = struct{}{}
	kill := f.kill
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.allSubs, s)
		f.mu.Unlock()
	}()
	sw := newStreamWriter(w)
	for _, m := range backlog {
		sw.send(m)
	}
	f.pump(r, sw, s, kill, nil)
}

// handleSubscribeSingle is SubscribeSingleInvoice: the current state, then
// each change, ending at SETTLED or CANCELED. Like lnd it waits silently
// for an invoice that does not exist (yet).
func (f *Fake) handleSubscribeSingle(w http.ResponseWriter, r *http.Request) {
	hb, err := decodeB64(r.PathValue("r_hash"))
	if err != nil || len(hb) != 32 {
		writeStreamError(w, http.StatusBadRequest, 3, "type mismatch, parameter: r_hash")
		return
	}
	hash := timmy.PaymentHash(hb)
	s := &sub{ch: make(chan map[string]any, 64)}
	f.mu.Lock()
	var first map[string]any
	if inv, ok := f.invoices[hash]; ok {
		first = f.invoiceJSON(inv)
	}
	if f.singleSubs[hash] == nil {
		f.singleSubs[hash] = map[*sub]struct{}{}
	}
	f.singleSubs[hash][s] = struct{}{}
	kill := f.kill
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.singleSubs[hash], s)
		f.mu.Unlock()
	}()
	sw := newStreamWriter(w)
	if first != nil {
		sw.send(first)
		if final(first["state"]) {
			return
		}
	}
	f.pump(r, sw, s, kill, final)
}

func final(state any) bool { return state == StateSettled || state == StateCanceled }

// pump forwards a subscription's messages until the client leaves, the
// fake closes its streams, or stop says a message was the last.
func (f *Fake) pump(r *http.Request, sw *streamWriter, s *sub, kill chan struct{}, stop func(state any) bool) {
	for {
		select {
		case m := <-s.ch:
			sw.send(m)
			if stop != nil && (stop(m["state"]) || stop(m["status"])) {
				return
			}
		case <-r.Context().Done():
			return
		case <-kill:
			return
		}
	}
}

// handleSend is SendPaymentV2: checks like lnd's, then the payment's
// updates until it is final.
func (f *Fake) handleSend(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, "payment_request", "timeout_seconds", "fee_limit_sat", "fee_limit_msat",
		"no_inflight_updates", "allow_self_payment", "amt", "amt_msat", "max_parts", "cancelable", "outgoing_chan_ids")
	if err != nil {
		writeStreamError(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	timeout, err := body.int("timeout_seconds")
	if err != nil || timeout <= 0 {
		writeStreamError(w, http.StatusInternalServerError, 2, "timeout_seconds must be specified")
		return
	}
	feeLimit, err := body.int("fee_limit_sat")
	if err != nil {
		writeStreamError(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	pr := body.string("payment_request")
	inv, err := zpay32.Decode(pr, &chaincfg.RegressionNetParams)
	if err != nil {
		writeStreamError(w, http.StatusInternalServerError, 2, err.Error())
		return
	}
	if inv.MilliSat == nil {
		writeStreamError(w, http.StatusInternalServerError, 2, "amount must be specified when paying a zero amount invoice")
		return
	}
	expiresAt := inv.Timestamp.Add(inv.Expiry())
	if time.Now().After(expiresAt) {
		writeStreamError(w, http.StatusInternalServerError, 2, "invoice expired. Valid until "+expiresAt.Format("2006-01-02 15:04:05 -0700 MST"))
		return
	}
	hash := timmy.PaymentHash(*inv.PaymentHash)

	f.mu.Lock()
	if p, ok := f.payments[hash]; ok {
		switch p.Status {
		case "SUCCEEDED":
			f.mu.Unlock()
			writeStreamError(w, http.StatusConflict, 6, "invoice is already paid")
			return
		case "IN_FLIGHT":
			f.mu.Unlock()
			writeStreamError(w, http.StatusConflict, 6, "payment is in transition")
			return
		}
	} else {
		f.payOrder = append(f.payOrder, hash)
		f.payments[hash] = &Payment{Hash: hash}
	}
	p := f.payments[hash]
	f.payIndex++
	*p = Payment{
		Hash: hash, PaymentRequest: pr, AmountSats: timmy.Sats(int64(*inv.MilliSat) / 1000),
		FeeLimitSats: timmy.Sats(feeLimit), TimeoutSeconds: timeout, Status: "IN_FLIGHT", Attempts: p.Attempts + 1,
	}
	msgs := []map[string]any{f.paymentJSON(p)}
	switch f.payMode {
	case PaySucceed:
		p.Status, p.FeeSats = "SUCCEEDED", f.feeSats
		msgs = append(msgs, f.paymentJSON(p))
	case PayFail:
		p.Status, p.FailureReason = "FAILED", "FAILURE_REASON_NO_ROUTE"
		msgs = append(msgs, f.paymentJSON(p))
	}
	s := f.addPaySubLocked(hash)
	kill := f.kill
	f.mu.Unlock()
	defer f.removePaySub(hash, s)

	sw := newStreamWriter(w)
	for _, m := range msgs {
		sw.send(m)
	}
	if len(msgs) > 1 {
		return
	}
	f.pump(r, sw, s, kill, finalPayment)
}

func finalPayment(status any) bool { return status == "SUCCEEDED" || status == "FAILED" }

// handleTrack is TrackPaymentV2: the current state, then updates until
// final. An unknown hash fails the stream with NotFound.
func (f *Fake) handleTrack(w http.ResponseWriter, r *http.Request) {
	hb, err := decodeB64(r.PathValue("payment_hash"))
	if err != nil || len(hb) != 32 {
		writeStreamError(w, http.StatusBadRequest, 3, "type mismatch, parameter: payment_hash")
		return
	}
	hash := timmy.PaymentHash(hb)
	f.mu.Lock()
	p, ok := f.payments[hash]
	if !ok {
		f.mu.Unlock()
		writeStreamError(w, http.StatusNotFound, 5, "payment isn't initiated")
		return
	}
	first := f.paymentJSON(p)
	s := f.addPaySubLocked(hash)
	kill := f.kill
	f.mu.Unlock()
	defer f.removePaySub(hash, s)
	sw := newStreamWriter(w)
	sw.send(first)
	if finalPayment(first["status"]) {
		return
	}
	f.pump(r, sw, s, kill, finalPayment)
}

func (f *Fake) addPaySubLocked(hash timmy.PaymentHash) *sub {
	s := &sub{ch: make(chan map[string]any, 16)}
	if f.paySubs[hash] == nil {
		f.paySubs[hash] = map[*sub]struct{}{}
	}
	f.paySubs[hash][s] = struct{}{}
	return s
}

func (f *Fake) removePaySub(hash timmy.PaymentHash, s *sub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.paySubs[hash], s)
}

func (f *Fake) payNotifyLocked(p *Payment) {
	for s := range f.paySubs[p.Hash] {
		s.send(f.paymentJSON(p))
	}
}

// settleLocked settles an invoice with the next settle index and tells
// both kinds of subscriber.
func (f *Fake) settleLocked(inv *Invoice) {
	f.settleIndex++
	inv.State = StateSettled
	inv.SettleIndex = f.settleIndex
	for s := range f.allSubs {
		s.send(f.invoiceJSON(inv))
	}
	f.notifyLocked(inv)
}

// notifyLocked tells an invoice's single subscribers of its state.
func (f *Fake) notifyLocked(inv *Invoice) {
	for s := range f.singleSubs[inv.Hash] {
		s.send(f.invoiceJSON(inv))
	}
}

// send queues a message without blocking the fake; a subscriber that
// falls 256 messages behind loses messages, which no test does.
func (s *sub) send(m map[string]any) {
	select {
	case s.ch <- m:
	default:
	}
}

// invoiceJSON renders lnrpc.Invoice as lnd's REST proxy does, every field
// present.
func (f *Fake) invoiceJSON(inv *Invoice) map[string]any {
	msat := inv.AmountSats.Msat()
	paid := int64(0)
	htlcs := []map[string]any{}
	for _, st := range inv.HTLCStates {
		if st != StateCanceled {
			paid = msat
		}
		htlcs = append(htlcs, map[string]any{
			"chan_id": "1", "htlc_index": "0", "amt_msat": i(msat), "accept_height": 500, "accept_time": i(inv.CreatedAt.Unix()),
			"resolve_time": "0", "expiry_height": 580, "state": st, "custom_records": map[string]any{},
			"mpp_total_amt_msat": i(msat), "amp": nil, "custom_channel_data": "",
		})
	}
	pre := ""
	if inv.Preimage != nil {
		pre = b64(inv.Preimage[:])
	}
	settleDate := int64(0)
	if inv.State == StateSettled {
		settleDate = time.Now().Unix()
	}
	return map[string]any{
		"memo": inv.Memo, "r_preimage": pre, "r_hash": b64(inv.Hash[:]),
		"value": i(int64(inv.AmountSats)), "value_msat": i(msat), "settled": inv.State == StateSettled,
		"creation_date": i(inv.CreatedAt.Unix()), "settle_date": i(settleDate),
		"payment_request": inv.PaymentRequest, "description_hash": "", "expiry": i(int64(inv.Expiry / time.Second)),
		"fallback_addr": "", "cltv_expiry": "80", "route_hints": []any{}, "private": false,
		"add_index": u(inv.AddIndex), "settle_index": u(inv.SettleIndex),
		"amt_paid": i(paid), "amt_paid_sat": i(paid / 1000), "amt_paid_msat": i(paid),
		"state": inv.State, "htlcs": htlcs, "features": map[string]any{}, "is_keysend": false,
		"payment_addr": b64(make([]byte, 32)), "is_amp": false, "amp_invoice_state": map[string]any{},
		"is_blinded": false, "blinded_path_config": nil,
	}
}

// paymentJSON renders lnrpc.Payment. Its payment_hash is hex, not base64.
func (f *Fake) paymentJSON(p *Payment) map[string]any {
	pre := ""
	if p.Status == "SUCCEEDED" {
		pre = hex.EncodeToString(make([]byte, 32))
	}
	reason := p.FailureReason
	if reason == "" {
		reason = "FAILURE_REASON_NONE"
	}
	return map[string]any{
		"payment_hash": p.Hash.String(), "value": i(int64(p.AmountSats)), "creation_date": i(time.Now().Unix()),
		"fee": i(int64(p.FeeSats)), "payment_preimage": pre, "value_sat": i(int64(p.AmountSats)),
		"value_msat": i(p.AmountSats.Msat()), "payment_request": p.PaymentRequest, "status": p.Status,
		"fee_sat": i(int64(p.FeeSats)), "fee_msat": i(p.FeeSats.Msat()), "creation_time_ns": i(time.Now().UnixNano()),
		"htlcs": []any{}, "payment_index": u(f.payIndex), "failure_reason": reason,
		"first_hop_custom_records": map[string]any{},
	}
}

// streamWriter writes a grpc-gateway server stream. As in grpc-gateway,
// nothing, not even the status line, is sent before the first message.
type streamWriter struct {
	w       http.ResponseWriter
	started bool
}

func newStreamWriter(w http.ResponseWriter) *streamWriter { return &streamWriter{w: w} }

func (s *streamWriter) send(m map[string]any) {
	b, _ := json.Marshal(map[string]any{"result": m})
	if !s.started {
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	_, _ = s.w.Write(append(b, '\n'))
	if fl, ok := s.w.(http.Flusher); ok {
		fl.Flush()
	}
}

// writeStreamError fails a stream before its first message: the HTTP
// status of the gRPC code and an {"error": status} body.
func writeStreamError(w http.ResponseWriter, httpStatus, code int, msg string) {
	lightningtest.WriteJSON(w, httpStatus, map[string]any{"error": map[string]any{"code": code, "message": msg, "details": []any{}}})
}

// writeStatus fails a unary call as grpc-gateway does.
func writeStatus(w http.ResponseWriter, httpStatus, code int, msg string) {
	lightningtest.WriteJSON(w, httpStatus, map[string]any{"code": code, "message": msg, "details": []any{}})
}

// fields is a protojson request body.
type fields map[string]json.RawMessage

// readBody parses a request body and, like lnd's REST proxy (protojson
// without DiscardUnknown), rejects fields the message does not have.
func readBody(r *http.Request, allowed ...string) (fields, error) {
	var m fields
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("proto: syntax error: %v", err)
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("proto: unknown field %q", k)
		}
	}
	return m, nil
}

// int reads an int64, which protojson accepts as a string or a number.
func (m fields) int(name string) (int64, error) {
	raw, ok := m[name]
	if !ok {
		return 0, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return 0, nil
		}
		return strconv.ParseInt(s, 10, 64)
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("proto: invalid value for int64 field %s: %s", name, raw)
	}
	return n, nil
}

func (m fields) string(name string) string {
	var s string
	_ = json.Unmarshal(m[name], &s)
	return s
}

// bytes reads a bytes field, base64 (standard or URL-safe) as protojson
// accepts.
func (m fields) bytes(name string) ([]byte, error) {
	var s string
	if err := json.Unmarshal(m[name], &s); err != nil {
		return nil, fmt.Errorf("proto: invalid value for bytes field %s", name)
	}
	return decodeB64(s)
}

func decodeB64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
func i(n int64) string    { return strconv.FormatInt(n, 10) }
func u(n uint64) string   { return strconv.FormatUint(n, 10) }
