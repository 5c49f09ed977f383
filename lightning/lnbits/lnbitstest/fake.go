// Package lnbitstest runs a fake LNbits server for tests. It speaks the
// LNbits v1 wire format the lnbits client uses (POST and GET
// /api/v1/payments, the /api/v1/ws/{key} payment websocket, FastAPI error
// bodies, 520 for funding source failures) and signs real BOLT11 invoices
// with a throwaway regtest key, so the client decodes and checks them as it
// would a real wallet's.
//
// Typical use:
//
//	fake := lnbitstest.New(t)
//	client, _ := lnbits.New(lnbits.Config{URL: fake.URL, InvoiceKey: fake.InvoiceKey, AdminKey: fake.AdminKey})
//	inv, _ := client.CreateInvoice(ctx, req)
//	fake.MarkPaid(inv.PaymentHash) // the buyer pays
//	refund := fake.BuyerInvoice(21) // the buyer asks for a refund
//	... fake.Payments() lists what the wallet paid out
package lnbitstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning/lightningtest"
)

// PayMode decides what happens to the wallet's outgoing payments.
type PayMode int

// The pay modes.
const (
	// PaySucceed settles outgoing payments at once (the default).
	PaySucceed PayMode = iota
	// PayFail fails them, answering 520 with status "failed" as LNbits does
	// when its funding source cannot route.
	PayFail
	// PayPending leaves them pending until ResolvePayment.
	PayPending
)

// Payment is an outgoing payment the fake wallet made.
type Payment struct {
	Hash       timmy.PaymentHash
	Bolt11     string
	AmountSats timmy.Sats
	FeeSats    timmy.Sats
	// Status is LNbits' word for it: pending, success or failed.
	Status string
	Time   time.Time
}

// Invoice is an incoming invoice the fake wallet issued.
type Invoice struct {
	Hash       timmy.PaymentHash
	Preimage   timmy.Preimage
	Bolt11     string
	AmountSats timmy.Sats
	Memo       string
	ExpiresAt  time.Time
	// Status is pending, success or failed (expired).
	Status string
}

// Option configures a Fake.
type Option func(*Fake)

// WithPayMode sets how outgoing payments end.
func WithPayMode(m PayMode) Option { return func(f *Fake) { f.payMode = m } }

// WithLegacyResponses makes the fake answer like LNbits before v1: invoices
// come back as payment_request, pay requests return only the hash, and
// payment details carry a pending flag instead of a status.
func WithLegacyResponses() Option { return func(f *Fake) { f.legacy = true } }

// WithFeeSats sets the routing fee charged on each successful payment.
func WithFeeSats(fee timmy.Sats) Option { return func(f *Fake) { f.feeSats = fee } }

// Fake is a running fake LNbits with one wallet. It is safe for concurrent
// use.
type Fake struct {
	// Buyer makes the invoices a buyer sends to claim a refund:
	// fake.BuyerInvoice(21), or fake.BuyerInvoiceWith for an expired or
	// amountless one.
	*lightningtest.Buyer

	// URL is the server's base URL, for LNBITS_URL.
	URL string
	// InvoiceKey is the wallet's invoice/read key, for LNBITS_API_KEY.
	InvoiceKey string
	// AdminKey is the wallet's admin key, for LNBITS_ADMIN_KEY.
	AdminKey string
	// WalletID is the wallet's id.
	WalletID string

	t       testing.TB
	srv     *httptest.Server
	node    *lightningtest.Node
	canned  lightningtest.Canned
	legacy  bool
	feeSats timmy.Sats

	mu          sync.Mutex
	payMode     PayMode
	incoming    map[timmy.PaymentHash]*Invoice
	outgoing    map[timmy.PaymentHash]*Payment
	order       []timmy.PaymentHash
	sockets     map[*websocket.Conn]string
	balanceMsat int64
}

// New starts a fake LNbits that stops when the test ends.
func New(t testing.TB, opts ...Option) *Fake {
	t.Helper()
	f := &Fake{
		Buyer:       lightningtest.NewBuyer(t),
		InvoiceKey:  randHex(16),
		AdminKey:    randHex(16),
		WalletID:    randHex(16),
		t:           t,
		node:        lightningtest.NewNode(t),
		incoming:    map[timmy.PaymentHash]*Invoice{},
		outgoing:    map[timmy.PaymentHash]*Payment{},
		sockets:     map[*websocket.Conn]string{},
		balanceMsat: 1_000_000_000,
	}
	for _, o := range opts {
		o(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/payments", f.handleCreate)
	mux.HandleFunc("GET /api/v1/payments/{hash}", f.handleGet)
	mux.HandleFunc("GET /api/v1/ws/{id}", f.handleWebsocket)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		lightningtest.WriteJSON(w, http.StatusNotFound, map[string]any{"detail": "Not Found"})
	})
	f.srv = httptest.NewServer(f.inject(mux))
	f.URL = f.srv.URL
	t.Cleanup(func() {
		f.CloseWebsockets()
		f.srv.Close()
	})
	return f
}

// Env returns the variables that point Timmy at this fake.
func (f *Fake) Env() map[string]string {
	return map[string]string{
		"LNBITS_URL":       f.URL,
		"LNBITS_API_KEY":   f.InvoiceKey,
		"LNBITS_ADMIN_KEY": f.AdminKey,
	}
}

// FailNext makes the next REST request (not the websocket) answer with
// status and body instead, e.g. 520 and {"detail":"no route","status":"failed"}.
// Calls queue up.
func (f *Fake) FailNext(status int, body string) { f.canned.Add(status, body) }

// SetPayMode changes how later outgoing payments end.
func (f *Fake) SetPayMode(m PayMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.payMode = m
}

// MarkPaid records that a buyer paid the incoming invoice with this hash,
// and tells the wallet's websocket listeners, as LNbits does.
func (f *Fake) MarkPaid(hash timmy.PaymentHash) {
	f.mu.Lock()
	inv, ok := f.incoming[hash]
	if !ok {
		f.mu.Unlock()
		f.t.Errorf("lnbitstest: MarkPaid: no invoice %s", hash)
		return
	}
	if inv.Status != "success" {
		inv.Status = "success"
		f.balanceMsat += inv.AmountSats.Msat()
	}
	msg := f.notification(f.incomingJSON(inv))
	f.mu.Unlock()
	f.broadcast(msg)
}

// Expire marks an unpaid incoming invoice failed, as LNbits does once its
// funding source reports the invoice expired.
func (f *Fake) Expire(hash timmy.PaymentHash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inv, ok := f.incoming[hash]; ok && inv.Status == "pending" {
		inv.Status = "failed"
	}
}

// ResolvePayment ends a pending outgoing payment, as succeeded or failed.
func (f *Fake) ResolvePayment(hash timmy.PaymentHash, succeeded bool) {
	f.mu.Lock()
	p, ok := f.outgoing[hash]
	if !ok || p.Status != "pending" {
		f.mu.Unlock()
		f.t.Errorf("lnbitstest: ResolvePayment: no pending payment %s", hash)
		return
	}
	var msg []byte
	if succeeded {
		p.Status = "success"
		p.FeeSats = f.feeSats
		msg = f.notification(f.outgoingJSON(p))
	} else {
		p.Status = "failed"
		f.balanceMsat += p.AmountSats.Msat()
	}
	f.mu.Unlock()
	if msg != nil {
		f.broadcast(msg)
	}
}

// Payments lists the wallet's outgoing payments in the order they were
// made, so a test can check a refund was paid exactly once.
func (f *Fake) Payments() []Payment {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Payment, 0, len(f.order))
	for _, h := range f.order {
		out = append(out, *f.outgoing[h])
	}
	return out
}

// Invoices lists the wallet's incoming invoices.
func (f *Fake) Invoices() []Invoice {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Invoice, 0, len(f.incoming))
	for _, inv := range f.incoming {
		out = append(out, *inv)
	}
	return out
}

// Invoice returns the incoming invoice with this hash.
func (f *Fake) Invoice(hash timmy.PaymentHash) (Invoice, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.incoming[hash]
	if !ok {
		return Invoice{}, false
	}
	return *inv, true
}

// CloseWebsockets drops every websocket connection, as a restarting LNbits
// or a flaky proxy would.
func (f *Fake) CloseWebsockets() {
	f.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(f.sockets))
	for c := range f.sockets {
		conns = append(conns, c)
	}
	f.sockets = map[*websocket.Conn]string{}
	f.mu.Unlock()
	for _, c := range conns {
		c.Close(websocket.StatusGoingAway, "server restarting")
	}
}

// WebsocketCount reports how many listeners are connected, so a test can
// wait for its listener before causing a payment.
func (f *Fake) WebsocketCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sockets)
}

// inject serves queued FailNext responses before the real handlers, to
// REST requests only: the websocket is left to connect.
func (f *Fake) inject(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v1/ws/") && f.canned.Serve(w) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// keyType reports which of the wallet's keys the request carries: admin,
// invoice, or "" for none or a wrong one.
func (f *Fake) keyType(r *http.Request) string {
	switch r.Header.Get("X-Api-Key") {
	case f.AdminKey:
		return "admin"
	case f.InvoiceKey:
		return "invoice"
	}
	return ""
}

type createBody struct {
	Out    bool     `json:"out"`
	Amount *float64 `json:"amount"`
	Memo   string   `json:"memo"`
	Expiry *int64   `json:"expiry"`
	Unit   string   `json:"unit"`
	Bolt11 string   `json:"bolt11"`
}

func (f *Fake) handleCreate(w http.ResponseWriter, r *http.Request) {
	kt := f.keyType(r)
	if kt == "" {
		lightningtest.WriteJSON(w, http.StatusUnauthorized, map[string]any{"detail": "Invalid key or wallet."})
		return
	}
	var body createBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		lightningtest.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{
			{"loc": []any{"body"}, "msg": "value is not a valid dict", "type": "type_error.dict"},
		}})
		return
	}
	if body.Out {
		if kt != "admin" {
			lightningtest.WriteJSON(w, http.StatusForbidden, map[string]any{"detail": "Invoice (or Admin) key required."})
			return
		}
		f.pay(w, body.Bolt11)
		return
	}
	if body.Amount == nil {
		lightningtest.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{
			{"loc": []any{"body", "amount"}, "msg": "field required", "type": "value_error.missing"},
		}})
		return
	}
	if body.Unit != "" && body.Unit != "sat" {
		lightningtest.WriteJSON(w, http.StatusBadRequest, map[string]any{"detail": "fake LNbits only speaks sat"})
		return
	}
	if *body.Amount <= 0 || *body.Amount != float64(int64(*body.Amount)) {
		lightningtest.WriteJSON(w, statusFundingSource, map[string]any{"detail": "Amountless invoices not supported.", "status": "failed"})
		return
	}
	expiry := time.Hour // LNbits' default invoice expiry
	if body.Expiry != nil && *body.Expiry > 0 {
		expiry = time.Duration(*body.Expiry) * time.Second
	}
	sats := timmy.Sats(*body.Amount)
	created := time.Now()
	pr, hash, pre, err := f.node.Sign(InvoiceOptions{AmountMsat: sats.Msat(), CreatedAt: created, Expiry: expiry, Memo: body.Memo})
	if err != nil {
		lightningtest.WriteJSON(w, statusFundingSource, map[string]any{"detail": err.Error(), "status": "pending"})
		return
	}
	inv := &Invoice{
		Hash: hash, Preimage: pre, Bolt11: pr, AmountSats: sats, Memo: body.Memo,
		// BOLT11 timestamps have one-second resolution.
		ExpiresAt: created.Truncate(time.Second).Add(expiry),
		Status:    "pending",
	}
	f.mu.Lock()
	f.incoming[hash] = inv
	resp := f.incomingJSON(inv)
	f.mu.Unlock()
	if f.legacy {
		lightningtest.WriteJSON(w, http.StatusCreated, map[string]any{
			"payment_hash": hash.String(), "payment_request": pr, "checking_id": hash.String(), "lnurl_response": nil,
		})
		return
	}
	lightningtest.WriteJSON(w, http.StatusCreated, resp)
}

const statusFundingSource = 520

func (f *Fake) pay(w http.ResponseWriter, bolt11 string) {
	if bolt11 == "" {
		lightningtest.WriteJSON(w, http.StatusBadRequest, map[string]any{"detail": "Missing BOLT11 invoice"})
		return
	}
	inv, err := decode(strings.ToLower(bolt11))
	if err != nil {
		lightningtest.WriteJSON(w, http.StatusBadRequest, map[string]any{"detail": "Failed to decode: " + err.Error()})
		return
	}
	if inv.MilliSat == nil || *inv.MilliSat == 0 {
		lightningtest.WriteJSON(w, http.StatusBadRequest, map[string]any{"detail": "Missig invoice amount."})
		return
	}
	if time.Now().After(inv.Timestamp.Add(inv.Expiry())) {
		lightningtest.WriteJSON(w, http.StatusBadRequest, map[string]any{"detail": "Invoice expired."})
		return
	}
	hash := timmy.PaymentHash(*inv.PaymentHash)
	amountMsat := int64(*inv.MilliSat)

	f.mu.Lock()
	if prev, ok := f.outgoing[hash]; ok && prev.Status != "failed" {
		f.mu.Unlock()
		lightningtest.WriteJSON(w, statusFundingSource, map[string]any{"detail": "Payment already exists.", "status": "failed"})
		return
	}
	if f.balanceMsat < amountMsat {
		f.mu.Unlock()
		lightningtest.WriteJSON(w, statusFundingSource, map[string]any{"detail": "Insufficient balance.", "status": "failed"})
		return
	}
	p := &Payment{Hash: hash, Bolt11: bolt11, AmountSats: timmy.Sats((amountMsat + 999) / 1000), Time: time.Now()}
	if _, seen := f.outgoing[hash]; !seen {
		f.order = append(f.order, hash)
	}
	f.outgoing[hash] = p
	var msg []byte
	switch f.payMode {
	case PayFail:
		p.Status = "failed"
		f.mu.Unlock()
		lightningtest.WriteJSON(w, statusFundingSource, map[string]any{"detail": "Payment failed: no route found", "status": "failed"})
		return
	case PayPending:
		p.Status = "pending"
		f.balanceMsat -= amountMsat
	default:
		p.Status = "success"
		p.FeeSats = f.feeSats
		f.balanceMsat -= amountMsat + f.feeSats.Msat()
		msg = f.notification(f.outgoingJSON(p))
	}
	resp := f.outgoingJSON(p)
	f.mu.Unlock()
	if msg != nil {
		f.broadcast(msg)
	}
	if f.legacy {
		lightningtest.WriteJSON(w, http.StatusCreated, map[string]any{"payment_hash": hash.String(), "checking_id": hash.String()})
		return
	}
	lightningtest.WriteJSON(w, http.StatusCreated, resp)
}

// handleGet answers like LNbits v1's api_payment: any caller learns paid,
// and only a key of the payment's wallet also gets details.
func (f *Fake) handleGet(w http.ResponseWriter, r *http.Request) {
	hash, err := timmy.ParsePaymentHash(r.PathValue("hash"))
	if err != nil {
		lightningtest.WriteJSON(w, http.StatusNotFound, map[string]any{"detail": "Payment does not exist."})
		return
	}
	withDetails := f.keyType(r) != ""
	f.mu.Lock()
	defer f.mu.Unlock()
	var details map[string]any
	var status string
	if p, ok := f.outgoing[hash]; ok {
		details, status = f.outgoingJSON(p), p.Status
	} else if inv, ok := f.incoming[hash]; ok {
		// LNbits asks its funding source about a pending invoice, which
		// reports it failed once it expired.
		if inv.Status == "pending" && time.Now().After(inv.ExpiresAt) {
			inv.Status = "failed"
		}
		details, status = f.incomingJSON(inv), inv.Status
	} else {
		lightningtest.WriteJSON(w, http.StatusNotFound, map[string]any{"detail": "Payment does not exist."})
		return
	}
	resp := map[string]any{"paid": status == "success", "preimage": details["preimage"]}
	if f.legacy {
		if withDetails {
			delete(details, "status")
			details["pending"] = status == "pending"
			resp["details"] = details
		}
		lightningtest.WriteJSON(w, http.StatusOK, resp)
		return
	}
	if status != "success" {
		resp["status"] = status
	}
	if withDetails {
		resp["details"] = details
	}
	lightningtest.WriteJSON(w, http.StatusOK, resp)
}

// handleWebsocket serves /api/v1/ws/{id}. Like LNbits, it accepts any id
// and sends a wallet's payment notifications to listeners on its invoice
// key or admin key.
func (f *Fake) handleWebsocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.sockets[c] = r.PathValue("id")
	f.mu.Unlock()
	// Read (and so answer pings and closes) until the client goes away.
	ctx := c.CloseRead(context.Background())
	<-ctx.Done()
	f.mu.Lock()
	delete(f.sockets, c)
	f.mu.Unlock()
	c.CloseNow()
}

// broadcast sends msg to the wallet's websocket listeners.
func (f *Fake) broadcast(msg []byte) {
	f.mu.Lock()
	var conns []*websocket.Conn
	for c, id := range f.sockets {
		if id == f.InvoiceKey || id == f.AdminKey {
			conns = append(conns, c)
		}
	}
	f.mu.Unlock()
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Write(ctx, websocket.MessageText, msg)
		cancel()
	}
}

// notification is LNbits' websocket message. Call with f.mu held.
func (f *Fake) notification(payment map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"wallet_balance": f.balanceMsat / 1000, "payment": payment})
	return b
}

// incomingJSON renders an invoice as LNbits' v1 Payment model.
func (f *Fake) incomingJSON(inv *Invoice) map[string]any {
	return f.paymentModel(inv.Hash, inv.Bolt11, inv.AmountSats.Msat(), 0, inv.Status, inv.Memo, inv.ExpiresAt, inv.Preimage.String())
}

// outgoingJSON renders an outgoing payment; LNbits stores its amount and
// fee as negative msat.
func (f *Fake) outgoingJSON(p *Payment) map[string]any {
	pre := ""
	if p.Status == "success" {
		pre = randHex(32)
	}
	exp := time.Time{}
	if inv, err := decode(strings.ToLower(p.Bolt11)); err == nil {
		exp = inv.Timestamp.Add(inv.Expiry())
	}
	return f.paymentModel(p.Hash, p.Bolt11, -p.AmountSats.Msat(), -p.FeeSats.Msat(), p.Status, "refund", exp, pre)
}

func (f *Fake) paymentModel(hash timmy.PaymentHash, bolt11 string, amount, fee int64, status, memo string, expiry time.Time, preimage string) map[string]any {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000")
	return map[string]any{
		"checking_id":    hash.String(),
		"payment_hash":   hash.String(),
		"wallet_id":      f.WalletID,
		"amount":         amount,
		"fee":            fee,
		"bolt11":         bolt11,
		"status":         status,
		"memo":           memo,
		"expiry":         expiry.UTC().Format("2006-01-02T15:04:05"),
		"webhook":        nil,
		"webhook_status": nil,
		"preimage":       preimage,
		"tag":            nil,
		"extension":      nil,
		"time":           now,
		"created_at":     now,
		"updated_at":     now,
		"labels":         []string{},
		"extra":          map[string]any{},
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("lnbitstest: %v", err))
	}
	return hex.EncodeToString(b)
}
