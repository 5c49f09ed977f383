package lnd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// lnd's REST proxy is grpc-gateway v2 with protojson set to use the proto
// field names and emit every field. So: snake_case names, int64 and uint64
// as JSON strings, bytes as standard base64, enums as their names, and each
// message of a server stream wrapped as {"result": ...} or {"error": ...}.

// i64 is a protojson 64-bit integer: a JSON string, though a number is
// accepted too.
type i64 int64

// UnmarshalJSON implements json.Unmarshaler.
func (n *i64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("lnd: %s is not an integer", b)
	}
	*n = i64(v)
	return nil
}

// u64 is a protojson unsigned 64-bit integer, such as an index.
type u64 uint64

// UnmarshalJSON implements json.Unmarshaler.
func (n *u64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("lnd: %s is not an unsigned integer", b)
	}
	*n = u64(v)
	return nil
}

// invoice is lnrpc.Invoice, the fields Timmy reads.
type invoice struct {
	RHash          []byte `json:"r_hash"`
	Memo           string `json:"memo"`
	ValueMsat      i64    `json:"value_msat"`
	CreationDate   i64    `json:"creation_date"`
	Expiry         i64    `json:"expiry"`
	PaymentRequest string `json:"payment_request"`
	AddIndex       u64    `json:"add_index"`
	SettleIndex    u64    `json:"settle_index"`
	AmtPaidMsat    i64    `json:"amt_paid_msat"`
	State          string `json:"state"`
	Htlcs          []struct {
		State string `json:"state"`
	} `json:"htlcs"`
}

// hash returns the invoice's payment hash, if lnd sent a valid one.
func (inv *invoice) hash() (timmy.PaymentHash, bool) {
	var h timmy.PaymentHash
	if len(inv.RHash) != len(h) {
		return h, false
	}
	copy(h[:], inv.RHash)
	return h, true
}

// expiresAt is when lnd stops accepting payment for the invoice.
func (inv *invoice) expiresAt() time.Time {
	return time.Unix(int64(inv.CreationDate), 0).Add(time.Duration(inv.Expiry) * time.Second)
}

// status maps lnd's invoice state to Timmy's. lnd's expiry watcher cancels
// an unpaid invoice when it expires, so a CANCELED invoice that never held
// an HTLC and is past its expiry is reported expired; one the service
// cancelled (or that was paid and given back) is cancelled. An OPEN
// invoice more than lightning.ExpiryGrace past its expiry is expired too: lnd rejects
// payments to it even if its watcher has not run yet.
func (inv *invoice) status(now time.Time) timmy.InvoiceStatus {
	switch inv.State {
	case "SETTLED":
		return timmy.InvoiceSettled
	case "ACCEPTED":
		return timmy.InvoiceAccepted
	case "CANCELED":
		if len(inv.Htlcs) == 0 && !now.Before(inv.expiresAt()) {
			return timmy.InvoiceExpired
		}
		return timmy.InvoiceCancelled
	}
	if lightning.Lapsed(inv.expiresAt(), now) {
		return timmy.InvoiceExpired
	}
	return timmy.InvoiceOpen
}

// payment is lnrpc.Payment, as SendPaymentV2 and TrackPaymentV2 stream it.
// Unlike an invoice's r_hash, its payment_hash is a hex string.
type payment struct {
	PaymentHash   string `json:"payment_hash"`
	Status        string `json:"status"`
	FeeMsat       i64    `json:"fee_msat"`
	FailureReason string `json:"failure_reason"`
}

// timmy converts an update into Timmy's payment. Fees are rounded up to
// whole sats so they are never understated.
func (p *payment) timmy(hash timmy.PaymentHash) timmy.Payment {
	out := timmy.Payment{Hash: hash, State: timmy.PaymentPending}
	switch p.Status {
	case "SUCCEEDED":
		out.State = timmy.PaymentSucceeded
		out.FeeSats = timmy.Sats((int64(p.FeeMsat) + 999) / 1000)
	case "FAILED":
		out.State = timmy.PaymentFailed
		out.FailureReason = failureReason(p.FailureReason)
	}
	return out
}

// failureReason renders lnd's enum, e.g. FAILURE_REASON_NO_ROUTE, as
// "no route".
func failureReason(r string) string {
	r = strings.TrimPrefix(r, "FAILURE_REASON_")
	if r == "" || r == "NONE" {
		return "payment failed"
	}
	return strings.ToLower(strings.ReplaceAll(r, "_", " "))
}

// rpcStatus is google.rpc.Status, grpc-gateway's error body.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// gRPC codes Timmy tells apart.
const (
	codeUnknown          = 2
	codeNotFound         = 5
	codeAlreadyExists    = 6
	codePermissionDenied = 7
	codeUnavailable      = 14
	codeUnauthenticated  = 16
)

// apiError is an error answer from lnd. It unwraps to a coded timmy error
// with a clear message, while the client can still match lnd's own text
// (lnd reports most conditions as code 2 with a fixed message).
type apiError struct {
	httpStatus int
	code       int
	message    string
	coded      *timmy.Error
}

func (e *apiError) Error() string { return e.coded.Message }
func (e *apiError) Unwrap() error { return e.coded }

// is reports whether lnd's message contains text, as lnd's sentinel errors
// reach REST clients only as text.
func (e *apiError) is(text string) bool { return strings.Contains(e.message, text) }

// lnd's error texts that decide what an error means.
const (
	msgInvoiceNotFound   = "unable to locate invoice"
	msgNoInvoices        = "there are no existing invoices"
	msgPaymentNotFound   = "payment isn't initiated"
	msgAlreadySettled    = "invoice already settled"
	msgAlreadyCanceled   = "invoice already canceled"
	msgStillOpen         = "invoice still open"
	msgAlreadyPaid       = "invoice is already paid"
	msgPaymentInFlight   = "payment is in transition"
	msgPaymentExists     = "payment already exists"
	msgWrongNetwork      = "invoice not for current active network"
	msgInvoiceExpired    = "invoice expired"
	msgWalletLocked      = "wallet locked"
	msgStillStarting     = "in the process of starting"
	msgMacaroonMissing   = "expected 1 macaroon"
	msgMacaroonMismatch  = "verification failed"
	msgPermissionDenied  = "permission denied"
	msgMacaroonNotFound  = "cannot get macaroon"
	msgMacaroonRootKeyID = "root key with id"
)

// parseError reads an lnd error response: {"code", "message", "details"}
// from a unary call, {"error": {...}} from a stream that failed before its
// first message, and {"error": "text", ...} from old grpc-gateway versions.
// Anything else, such as a proxy's HTML page, is quoted briefly.
func parseError(httpStatus int, body []byte) *apiError {
	var st rpcStatus
	var wrapped struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &wrapped) == nil && len(wrapped.Error) > 0 && wrapped.Error[0] == '{' {
		_ = json.Unmarshal(wrapped.Error, &st)
	} else if json.Unmarshal(body, &st) != nil || st.Message == "" {
		var old struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &old) == nil && old.Error != "" {
			st.Message = old.Error
		} else {
			st.Message = snippet(body)
		}
	}
	e := &apiError{httpStatus: httpStatus, code: st.Code, message: st.Message}
	code := timmy.EUNAVAILABLE
	var msg string
	switch {
	case st.Code == codeNotFound || e.is(msgInvoiceNotFound) || e.is(msgNoInvoices) || e.is(msgPaymentNotFound):
		code = timmy.ENOTFOUND
		msg = "lnd: not found: " + st.Message
	case st.Code == codeUnauthenticated || st.Code == codePermissionDenied || e.is(msgMacaroonMissing) ||
		e.is(msgMacaroonMismatch) || e.is(msgPermissionDenied) || e.is(msgMacaroonNotFound) || e.is(msgMacaroonRootKeyID):
		msg = "lnd: macaroon rejected: " + st.Message
	case st.Code == codeUnavailable || e.is(msgWalletLocked) || e.is(msgStillStarting):
		msg = "lnd: not ready: " + st.Message
	case httpStatus == http.StatusNotFound && st.Code == 0:
		code = timmy.ENOTFOUND
		msg = fmt.Sprintf("lnd: HTTP 404 (is LND_REST_URL lnd's REST port?): %s", st.Message)
	default:
		msg = fmt.Sprintf("lnd: %s (HTTP %d, gRPC code %d)", st.Message, httpStatus, st.Code)
	}
	e.coded = timmy.Errorf(code, "%s", msg)
	return e
}

// snippet shortens a non-JSON body to something fit for an error message.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(bytes.TrimSpace(b))), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		s = "empty response"
	}
	return s
}
