//go:build itest

package regtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestRegtest starts one network and runs the smoke checks against it as
// subtests, which is the pattern service integration tests should follow:
// starting a network costs far more than any single check.
func TestRegtest(t *testing.T) {
	net := Start(t)

	t.Run("PlainInvoice", func(t *testing.T) { testPlainInvoice(t, net) })
	t.Run("HoldInvoiceCancel", func(t *testing.T) { testHoldInvoiceCancel(t, net) })
	t.Run("HoldInvoiceSettle", func(t *testing.T) { testHoldInvoiceSettle(t, net) })
	t.Run("Mine", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		before, err := net.Btcd.BlockCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(net.Mine(3)); got != 3 {
			t.Fatalf("Mine(3) returned %d hashes", got)
		}
		info, err := net.Service.GetInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.BlockHeight != before+3 {
			t.Fatalf("service height %d after mining, want %d", info.BlockHeight, before+3)
		}
	})
}

// testContext returns a context bounded by timeout and the test's own
// deadline.
func testContext(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func testPlainInvoice(t *testing.T, net *Network) {
	ctx := testContext(t, time.Minute)

	inv, err := net.Service.AddInvoice(ctx, 1000, "smoke plain")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.RHash) != 32 || inv.PaymentRequest == "" {
		t.Fatalf("AddInvoice returned %+v", inv)
	}

	res, err := net.Buyer.PayInvoice(ctx, inv.PaymentRequest)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != PaymentSucceeded {
		t.Fatalf("payment status %s (%s), want SUCCEEDED", res.Status, res.FailureReason)
	}
	if res.PaymentHash != hex.EncodeToString(inv.RHash) {
		t.Errorf("payment hash %s, want %x", res.PaymentHash, inv.RHash)
	}
	preimage, err := hex.DecodeString(res.Preimage)
	if err != nil {
		t.Fatalf("preimage %q: %v", res.Preimage, err)
	}
	if h := sha256.Sum256(preimage); !bytes.Equal(h[:], inv.RHash) {
		t.Errorf("sha256(preimage) = %x, want %x", h, inv.RHash)
	}

	got, err := net.Service.LookupInvoice(ctx, inv.RHash)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != InvoiceSettled || got.AmtPaidSat != 1000 {
		t.Fatalf("service invoice state %s amt_paid_sat %d, want SETTLED 1000", got.State, got.AmtPaidSat)
	}
	v2, err := net.Service.LookupInvoiceV2(ctx, inv.RHash)
	if err != nil {
		t.Fatal(err)
	}
	if v2.State != InvoiceSettled {
		t.Fatalf("v2 lookup state %s, want SETTLED", v2.State)
	}
}

// newPreimage returns a random preimage and its payment hash, as the
// service does for hold invoices.
func newPreimage(t *testing.T) (preimage, hash []byte) {
	t.Helper()
	preimage = make([]byte, 32)
	if _, err := rand.Read(preimage); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(preimage)
	return preimage, h[:]
}

// logStreamMessage logs one raw stream message so the wire format is visible
// in -v output.
func logStreamMessage(t *testing.T, what string, raw json.RawMessage) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Logf("%s: %s", what, raw)
		return
	}
	t.Logf("%s: %s", what, buf.String())
}

func testHoldInvoiceCancel(t *testing.T, net *Network) {
	ctx := testContext(t, 2*time.Minute)
	_, hash := newPreimage(t)

	localBefore := idleLocalBalance(ctx, t, net.Buyer)

	inv, err := net.Service.AddHoldInvoice(ctx, hash, 2000, "smoke hold cancel")
	if err != nil {
		t.Fatal(err)
	}

	sub, err := net.Service.SubscribeInvoice(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	raw, err := sub.NextRaw()
	if err != nil {
		t.Fatal(err)
	}
	logStreamMessage(t, "v2 subscribe first message", raw)
	var first Invoice
	if err := json.Unmarshal(raw, &first); err != nil {
		t.Fatal(err)
	}
	if first.State != InvoiceOpen {
		t.Fatalf("subscription's first state %s, want OPEN", first.State)
	}

	pay, err := net.Buyer.PayInvoiceAsync(ctx, inv.PaymentRequest)
	if err != nil {
		t.Fatal(err)
	}
	defer pay.Close()

	var accepted Invoice
	if err := sub.Next(&accepted); err != nil {
		t.Fatal(err)
	}
	if accepted.State != InvoiceAccepted {
		t.Fatalf("subscription's second state %s, want ACCEPTED", accepted.State)
	}
	if _, err := net.Service.WaitInvoiceState(ctx, hash, InvoiceAccepted, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := pay.WaitStatus(ctx, PaymentInFlight); err != nil {
		t.Fatal(err)
	}
	if st := pay.Latest().Status; st != PaymentInFlight {
		t.Fatalf("buyer payment status %s while invoice held, want IN_FLIGHT", st)
	}

	if err := net.Service.CancelInvoice(ctx, hash); err != nil {
		t.Fatal(err)
	}
	var canceled Invoice
	if err := sub.Next(&canceled); err != nil {
		t.Fatal(err)
	}
	if canceled.State != InvoiceCanceled {
		t.Fatalf("subscription's third state %s, want CANCELED", canceled.State)
	}

	res, err := pay.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != PaymentFailed {
		t.Fatalf("buyer payment status %s, want FAILED", res.Status)
	}
	t.Logf("canceled hold payment failure_reason=%s", res.FailureReason)

	if localAfter := idleLocalBalance(ctx, t, net.Buyer); localAfter != localBefore {
		t.Fatalf("buyer local balance %d after cancel, want exactly %d", localAfter, localBefore)
	}
}

// idleLocalBalance returns node's local channel balance once no HTLC is
// left on its commitments, so that it can be compared exactly.
func idleLocalBalance(ctx context.Context, t *testing.T, node *Node) int64 {
	t.Helper()
	if err := node.WaitChannelsIdle(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	local, _, err := node.ChannelBalanceSats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return local
}

func testHoldInvoiceSettle(t *testing.T, net *Network) {
	ctx := testContext(t, 2*time.Minute)
	preimage, hash := newPreimage(t)

	buyerBefore := idleLocalBalance(ctx, t, net.Buyer)

	inv, err := net.Service.AddHoldInvoice(ctx, hash, 3000, "smoke hold settle")
	if err != nil {
		t.Fatal(err)
	}

	// Also watch the all-invoices stream, which the service may use
	// instead of per-invoice subscriptions. add_index replays additions
	// after that index, so the first message (our invoice, OPEN) proves
	// the subscription is live before the payment starts.
	all, err := net.Service.OpenStream(ctx, http.MethodGet, fmt.Sprintf("/v1/invoices/subscribe?add_index=%d", inv.AddIndex-1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	raw, err := all.NextRaw()
	if err != nil {
		t.Fatal(err)
	}
	logStreamMessage(t, "v1 subscribe replayed add", raw)
	var added Invoice
	if err := json.Unmarshal(raw, &added); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(added.RHash, hash) || added.State != InvoiceOpen {
		t.Fatalf("first v1 subscription message is %x in state %s, want %x OPEN", added.RHash, added.State, hash)
	}

	pay, err := net.Buyer.PayInvoiceAsync(ctx, inv.PaymentRequest)
	if err != nil {
		t.Fatal(err)
	}
	defer pay.Close()
	logStreamMessage(t, "router send first update", mustJSON(t, pay.Latest()))

	if _, err := net.Service.WaitInvoiceState(ctx, hash, InvoiceAccepted, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := net.Service.SettleInvoice(ctx, preimage); err != nil {
		t.Fatal(err)
	}
	res, err := pay.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != PaymentSucceeded || res.Preimage != hex.EncodeToString(preimage) {
		t.Fatalf("buyer payment %+v, want SUCCEEDED with preimage %x", res, preimage)
	}
	if _, err := net.Service.WaitInvoiceState(ctx, hash, InvoiceSettled, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// /v1/invoices/subscribe reports only additions and settlements (not
	// ACCEPTED or CANCELED); the settlement of this invoice must appear.
	for i := 0; ; i++ {
		raw, err := all.NextRaw()
		if err != nil {
			t.Fatal(err)
		}
		logStreamMessage(t, "v1 subscribe message", raw)
		var upd Invoice
		if err := json.Unmarshal(raw, &upd); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(upd.RHash, hash) && upd.State == InvoiceSettled {
			break
		}
		if i > 10 {
			t.Fatal("settlement not seen on /v1/invoices/subscribe")
		}
	}

	if got := idleLocalBalance(ctx, t, net.Buyer); got != buyerBefore-3000 {
		t.Fatalf("buyer local balance %d after settle, want exactly %d", got, buyerBefore-3000)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
