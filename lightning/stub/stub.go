// Package stub is Timmy's embedded Lightning backend for development and
// tests. It issues real BOLT11 invoices for regtest, signed by a throwaway
// node key kept in the data dir, and keeps their state in the database so a
// restart loses nothing. Invoices are "paid" through the development route or
// `timmy dev pay`. It supports hold invoices, like LND, so the service's
// settle-on-delivery path runs by default.
package stub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// Invoice is a stub invoice as the stub stores it.
type Invoice struct {
	PaymentHash    timmy.PaymentHash
	PaymentRequest string
	AmountSats     timmy.Sats
	Preimage       timmy.Preimage
	Hold           bool
	Status         timmy.InvoiceStatus
	ExpiresAt      time.Time
	CreatedAt      time.Time
}

// InvoiceStore keeps stub invoices; the SQL store implements it.
type InvoiceStore interface {
	CreateStubInvoice(ctx context.Context, inv Invoice) error
	GetStubInvoice(ctx context.Context, hash timmy.PaymentHash) (*Invoice, error)
	UpdateStubInvoiceStatus(ctx context.Context, hash timmy.PaymentHash, from, to timmy.InvoiceStatus, at time.Time) (bool, error)
}

// Lightning is the stub backend.
type Lightning struct {
	store InvoiceStore
	key   *btcec.PrivateKey
	clock atomic.Pointer[func() time.Time]

	mu          sync.Mutex
	subscribers map[int]func(timmy.PaymentHash)
	nextSub     int
}

var (
	_ timmy.Lightning       = (*Lightning)(nil)
	_ timmy.HoldInvoices    = (*Lightning)(nil)
	_ timmy.InvoiceNotifier = (*Lightning)(nil)
)

// New returns a stub backend whose node key lives in keyPath, created on
// first use, and whose invoices live in store.
func New(store InvoiceStore, keyPath string) (*Lightning, error) {
	key, err := loadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	return &Lightning{store: store, key: key, subscribers: map[int]func(timmy.PaymentHash){}}, nil
}

// SetClock replaces the clock, for tests of expiry.
func (l *Lightning) SetClock(now func() time.Time) { l.clock.Store(&now) }

// now reads the clock: the wall clock unless a test replaced it.
func (l *Lightning) now() time.Time {
	if f := l.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// NodePubKey is the stub node's public key, which signs every invoice.
func (l *Lightning) NodePubKey() *btcec.PublicKey { return l.key.PubKey() }

func loadOrCreateKey(path string) (*btcec.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("stub node key %s: not 32 hex-encoded bytes", path)
		}
		key, _ := btcec.PrivKeyFromBytes(raw)
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read stub node key: %w", err)
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("generate stub node key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create stub key dir: %w", err)
	}
	// O_EXCL makes two processes starting at once agree on one key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		time.Sleep(50 * time.Millisecond)
		return loadOrCreateKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("write stub node key: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(hex.EncodeToString(key.Serialize())); err != nil {
		return nil, fmt.Errorf("write stub node key: %w", err)
	}
	return key, nil
}

// CreateInvoice issues a plain invoice, which settles as soon as it is paid.
func (l *Lightning) CreateInvoice(ctx context.Context, req timmy.InvoiceRequest) (timmy.NewInvoice, error) {
	preimage, err := timmy.NewPreimage()
	if err != nil {
		return timmy.NewInvoice{}, err
	}
	return l.issue(ctx, req, preimage, false)
}

// CreateHoldInvoice issues an invoice that is held when paid, until the
// service settles or cancels it.
func (l *Lightning) CreateHoldInvoice(ctx context.Context, req timmy.InvoiceRequest, preimage timmy.Preimage) (timmy.NewInvoice, error) {
	return l.issue(ctx, req, preimage, true)
}

func (l *Lightning) issue(ctx context.Context, req timmy.InvoiceRequest, preimage timmy.Preimage, hold bool) (timmy.NewInvoice, error) {
	if err := lightning.CheckInvoiceRequest(req); err != nil {
		return timmy.NewInvoice{}, err
	}
	if req.Expiry <= 0 {
		req.Expiry = time.Hour
	}
	hash := timmy.PaymentHash(sha256.Sum256(preimage[:]))
	created := l.now().Truncate(time.Second)
	var paymentAddr [32]byte
	copy(paymentAddr[:], hash[:]) // any 32 bytes; unique per invoice
	bolt11, err := lightning.SignInvoice(l.key, lightning.Invoice{
		Chain:       &chaincfg.RegressionNetParams,
		PaymentHash: hash,
		PaymentAddr: paymentAddr,
		AmountMsat:  req.AmountSats.Msat(),
		CreatedAt:   created,
		Expiry:      req.Expiry,
		Memo:        req.Memo,
		CLTVExpiry:  80,
	})
	if err != nil {
		return timmy.NewInvoice{}, fmt.Errorf("stub invoice: %w", err)
	}
	stored := Invoice{
		PaymentHash: hash, PaymentRequest: bolt11, AmountSats: req.AmountSats, Preimage: preimage,
		Hold: hold, Status: timmy.InvoiceOpen, ExpiresAt: created.Add(req.Expiry), CreatedAt: created,
	}
	if err := l.store.CreateStubInvoice(ctx, stored); err != nil {
		return timmy.NewInvoice{}, err
	}
	p := preimage
	return timmy.NewInvoice{PaymentRequest: bolt11, PaymentHash: hash, AmountSats: req.AmountSats, ExpiresAt: stored.ExpiresAt, Preimage: &p}, nil
}

// LookupInvoice reports the invoice's state. An unpaid invoice past its
// expiry is expired, as a real node would report it.
func (l *Lightning) LookupInvoice(ctx context.Context, hash timmy.PaymentHash) (timmy.InvoiceStatus, error) {
	inv, err := l.store.GetStubInvoice(ctx, hash)
	if err != nil {
		return "", err
	}
	if inv.Status == timmy.InvoiceOpen && !l.now().Before(inv.ExpiresAt) {
		return timmy.InvoiceExpired, nil
	}
	return inv.Status, nil
}

// Pay pays a stub invoice as a buyer would: a plain invoice settles, a hold
// invoice is accepted and waits for the service. Paying an unknown, expired
// or already paid invoice is an error the caller can show.
func (l *Lightning) Pay(ctx context.Context, hash timmy.PaymentHash) (timmy.InvoiceStatus, error) {
	inv, err := l.store.GetStubInvoice(ctx, hash)
	if err != nil {
		return "", err
	}
	if !l.now().Before(inv.ExpiresAt) && !inv.Status.Paid() {
		return "", timmy.Errorf(timmy.ECONFLICT, "invoice expired at %s", inv.ExpiresAt.Format(time.RFC3339))
	}
	if inv.Status != timmy.InvoiceOpen {
		return "", timmy.Errorf(timmy.ECONFLICT, "invoice is already %s", inv.Status)
	}
	to := timmy.InvoiceSettled
	if inv.Hold {
		to = timmy.InvoiceAccepted
	}
	ok, err := l.store.UpdateStubInvoiceStatus(ctx, hash, timmy.InvoiceOpen, to, l.now())
	if err != nil {
		return "", err
	}
	if !ok {
		return "", timmy.Errorf(timmy.ECONFLICT, "invoice was paid concurrently")
	}
	l.notify(hash)
	return to, nil
}

// SettleHoldInvoice takes a held payment.
func (l *Lightning) SettleHoldInvoice(ctx context.Context, preimage timmy.Preimage) error {
	hash := timmy.PaymentHash(sha256.Sum256(preimage[:]))
	inv, err := l.store.GetStubInvoice(ctx, hash)
	if err != nil {
		return err
	}
	if inv.Preimage != preimage {
		return timmy.Errorf(timmy.EINVALID, "wrong preimage")
	}
	switch inv.Status {
	case timmy.InvoiceSettled:
		return nil
	case timmy.InvoiceAccepted:
	default:
		return timmy.Errorf(timmy.ECONFLICT, "cannot settle a %s invoice", inv.Status)
	}
	if _, err := l.store.UpdateStubInvoiceStatus(ctx, hash, timmy.InvoiceAccepted, timmy.InvoiceSettled, l.now()); err != nil {
		return err
	}
	l.notify(hash)
	return nil
}

// CancelHoldInvoice gives a held payment back, or makes an open invoice
// unpayable.
func (l *Lightning) CancelHoldInvoice(ctx context.Context, hash timmy.PaymentHash) error {
	inv, err := l.store.GetStubInvoice(ctx, hash)
	if err != nil {
		return err
	}
	switch inv.Status {
	case timmy.InvoiceCancelled:
		return nil
	case timmy.InvoiceSettled:
		return timmy.Errorf(timmy.ECONFLICT, "cannot cancel a settled invoice")
	}
	if _, err := l.store.UpdateStubInvoiceStatus(ctx, hash, inv.Status, timmy.InvoiceCancelled, l.now()); err != nil {
		return err
	}
	l.notify(hash)
	return nil
}

// NotifyInvoices calls hint for every invoice this process pays, settles or
// cancels, until ctx ends. Other processes sharing the database learn of
// changes through the service's periodic reconcile.
func (l *Lightning) NotifyInvoices(ctx context.Context, hint func(timmy.PaymentHash)) error {
	l.mu.Lock()
	id := l.nextSub
	l.nextSub++
	l.subscribers[id] = hint
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	delete(l.subscribers, id)
	l.mu.Unlock()
	return ctx.Err()
}

func (l *Lightning) notify(hash timmy.PaymentHash) {
	l.mu.Lock()
	subs := make([]func(timmy.PaymentHash), 0, len(l.subscribers))
	for _, s := range l.subscribers {
		subs = append(subs, s)
	}
	l.mu.Unlock()
	for _, s := range subs {
		s(hash)
	}
}
