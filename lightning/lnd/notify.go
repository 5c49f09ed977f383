package lnd

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	timmy "github.com/timmyhq/timmy"
)

// SettleIndexCursor is the name under which NotifyInvoices keeps lnd's
// settle index in the CursorStore.
const SettleIndexCursor = "lnd.settle_index"

// CursorStore persists the position of an event stream, so that after a
// restart it resumes where it stopped instead of replaying everything or
// missing what happened meanwhile. The SQL store implements it.
type CursorStore interface {
	// LoadCursor returns the saved value, or 0 when none was saved.
	LoadCursor(ctx context.Context, name string) (uint64, error)
	// SaveCursor records value under name.
	SaveCursor(ctx context.Context, name string, value uint64) error
}

// MemoryCursors is a CursorStore in memory, for tests and for running
// without a database. It is safe for concurrent use.
type MemoryCursors struct {
	mu sync.Mutex
	m  map[string]uint64
}

// NewMemoryCursors returns an empty MemoryCursors.
func NewMemoryCursors() *MemoryCursors { return &MemoryCursors{m: map[string]uint64{}} }

// LoadCursor implements CursorStore.
func (m *MemoryCursors) LoadCursor(_ context.Context, name string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[name], nil
}

// SaveCursor implements CursorStore.
func (m *MemoryCursors) SaveCursor(_ context.Context, name string, value uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[name] = value
	return nil
}

// holdSet is the hold invoices this process created and has not yet seen
// reach a final state. SubscribeInvoices does not report a hold invoice
// becoming ACCEPTED, so each is watched with its own SubscribeSingleInvoice
// stream. Hold invoices created by an earlier process are not watched;
// the service's periodic reconcile of open invoices covers them.
type holdSet struct {
	mu     sync.Mutex
	hashes map[timmy.PaymentHash]struct{}
	subs   map[chan struct{}]struct{}
}

func newHoldSet() *holdSet {
	return &holdSet{hashes: map[timmy.PaymentHash]struct{}{}, subs: map[chan struct{}]struct{}{}}
}

// add records a hash and wakes every running NotifyInvoices.
func (s *holdSet) add(h timmy.PaymentHash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hashes[h] = struct{}{}
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

func (s *holdSet) remove(h timmy.PaymentHash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.hashes, h)
}

func (s *holdSet) list() []timmy.PaymentHash {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]timmy.PaymentHash, 0, len(s.hashes))
	for h := range s.hashes {
		out = append(out, h)
	}
	return out
}

func (s *holdSet) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[ch] = struct{}{}
	return ch
}

func (s *holdSet) unsubscribe(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, ch)
}

// event is an invoice update from one of NotifyInvoices' streams.
type event struct {
	hash        timmy.PaymentHash
	settleIndex uint64
}

// holdDone reports that a hold invoice's stream ended.
type holdDone struct {
	hash timmy.PaymentHash
	err  error
}

// NotifyInvoices streams invoice updates from lnd and calls hint, from this
// goroutine only, with the hash of each invoice that may have changed:
//
//   - SubscribeInvoices (GET /v1/invoices/subscribe) reports settled
//     invoices. It resumes from the settle index saved in the CursorStore,
//     so settlements that happened while Timmy was down are replayed, and
//     the highest settle index seen is saved after its hint returns.
//   - SubscribeSingleInvoice (GET /v2/invoices/subscribe/{hash}) watches
//     each hold invoice this process created until it is settled or
//     cancelled, because SubscribeInvoices never reports ACCEPTED.
//
// It returns nil when ctx ends and an error when any stream fails or ends.
// Reconnecting, and reconciling what was missed, is the caller's job.
func (c *Client) NotifyInvoices(ctx context.Context, hint func(timmy.PaymentHash)) error {
	cursor, err := c.cursors.LoadCursor(ctx, SettleIndexCursor)
	if err != nil {
		return fmt.Errorf("lnd notify: load settle index: %w", err)
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	events := make(chan event)
	failed := make(chan error, 1)
	done := make(chan holdDone)

	// Opening SubscribeInvoices blocks until lnd has something to say (see
	// openStream), so it happens in the reader's goroutine.
	wg.Go(func() {
		err := c.readAll(ctx, cursor, events)
		select {
		case failed <- err:
		default:
		}
	})

	wake := c.holds.subscribe()
	defer c.holds.unsubscribe(wake)
	watching := map[timmy.PaymentHash]bool{}
	watchHolds := func() {
		for _, h := range c.holds.list() {
			if watching[h] {
				continue
			}
			watching[h] = true
			wg.Go(func() {
				err := c.watchHold(ctx, h, events)
				select {
				case done <- holdDone{hash: h, err: err}:
				case <-ctx.Done():
				}
			})
		}
	}
	watchHolds()

	for {
		select {
		case <-parent.Done():
			return nil
		case err := <-failed:
			if parent.Err() != nil {
				return nil
			}
			return fmt.Errorf("lnd notify: %w", err)
		case <-wake:
			watchHolds()
		case d := <-done:
			delete(watching, d.hash)
			switch {
			case d.err == nil:
			case timmy.ErrorCode(d.err) == timmy.ENOTFOUND:
				// lnd forgot it (deleted, or a different node): nothing to watch.
				c.holds.remove(d.hash)
			case parent.Err() != nil:
				return nil
			default:
				return fmt.Errorf("lnd notify: hold invoice %s: %w", d.hash, d.err)
			}
		case ev := <-events:
			hint(ev.hash)
			if ev.settleIndex > cursor {
				if err := c.cursors.SaveCursor(ctx, SettleIndexCursor, ev.settleIndex); err != nil {
					if parent.Err() != nil {
						return nil
					}
					return fmt.Errorf("lnd notify: save settle index: %w", err)
				}
				cursor = ev.settleIndex
			}
		}
	}
}

// subscribeAll opens SubscribeInvoices from the given settle index. With
// settle_index above zero lnd first replays every invoice settled after
// it. add_index is left out: new invoices need no hint.
func (c *Client) subscribeAll(ctx context.Context, settleIndex uint64) (*stream, error) {
	q := url.Values{}
	if settleIndex > 0 {
		q.Set("settle_index", strconv.FormatUint(settleIndex, 10))
	}
	// No first-message timeout: lnd says nothing until an invoice changes.
	return c.openStream(ctx, http.MethodGet, "/v1/invoices/subscribe", q, nil, 0)
}

// readAll opens SubscribeInvoices and forwards its settlements. It ignores
// the add events the stream also carries.
func (c *Client) readAll(ctx context.Context, settleIndex uint64, events chan<- event) error {
	s, err := c.subscribeAll(ctx, settleIndex)
	if err != nil {
		return err
	}
	defer s.Close()
	for {
		var inv invoice
		if err := s.next(&inv); err != nil {
			return s.ended(err)
		}
		h, ok := inv.hash()
		if !ok || inv.State != "SETTLED" {
			continue
		}
		select {
		case events <- event{hash: h, settleIndex: uint64(inv.SettleIndex)}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// watchHold follows one hold invoice until it is settled or cancelled. lnd
// sends the current state first, so a payment that arrived while no stream
// was open is reported at once.
func (c *Client) watchHold(ctx context.Context, h timmy.PaymentHash, events chan<- event) error {
	s, err := c.openStream(ctx, http.MethodGet, "/v2/invoices/subscribe/"+b64url(h), nil, nil, c.cfg.Timeout)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// lnd waits silently on a hash it does not know, which looks like
		// a timeout here. Ask, so a forgotten invoice is dropped instead
		// of failing every reconnect.
		if _, lerr := c.LookupInvoice(ctx, h); timmy.ErrorCode(lerr) == timmy.ENOTFOUND {
			return lerr
		}
		return err
	}
	defer s.Close()
	for {
		var inv invoice
		if err := s.next(&inv); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return s.ended(err)
		}
		if inv.State == "OPEN" {
			continue
		}
		// The settle index is left out: only SubscribeInvoices, which
		// delivers settlements in index order, may advance the cursor.
		select {
		case events <- event{hash: h}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if inv.State == "SETTLED" || inv.State == "CANCELED" {
			c.holds.remove(h)
			return nil
		}
	}
}
