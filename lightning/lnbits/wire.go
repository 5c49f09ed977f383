package lnbits

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	timmy "github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/lightning"
)

// LNbits' payment states, as its v1 Payment model and status fields spell
// them.
const (
	stateSuccess = "success"
	stateFailed  = "failed"
	statePending = "pending"
)

// statusFundingSource is the HTTP status LNbits uses when its funding
// source (the Lightning node behind it) failed.
const statusFundingSource = 520

// paymentStatus is the body of GET /api/v1/payments/{hash}. details is
// present only when the key belongs to the payment's wallet.
type paymentStatus struct {
	Paid     bool            `json:"paid"`
	Status   string          `json:"status"`
	Preimage string          `json:"preimage"`
	Details  *paymentDetails `json:"details"`
}

// paymentDetails is LNbits' Payment model: the details of a payment
// status, the v1 response to POST /api/v1/payments, and the "payment" of a
// websocket message. Older versions had pending instead of status and
// called the invoice payment_request in some responses.
type paymentDetails struct {
	PaymentHash    string          `json:"payment_hash"`
	Status         string          `json:"status"`
	Pending        *bool           `json:"pending"`
	Amount         msat            `json:"amount"`
	Fee            msat            `json:"fee"`
	Bolt11         string          `json:"bolt11"`
	PaymentRequest string          `json:"payment_request"`
	Expiry         json.RawMessage `json:"expiry"`
}

// state folds LNbits' several ways of saying where a payment is into one.
// The top-level status is the freshest (LNbits asks its funding source for
// it), the details' status is what its database says, and paid is the
// oldest field. Any of them saying success wins, then any saying failed.
func (p *paymentStatus) state() string {
	var states []string
	states = append(states, p.Status)
	if p.Details != nil {
		states = append(states, p.Details.state())
	}
	for _, s := range states {
		if s == stateSuccess {
			return stateSuccess
		}
	}
	if p.Paid {
		return stateSuccess
	}
	for _, s := range states {
		if s == stateFailed {
			return stateFailed
		}
	}
	return statePending
}

// state reads a Payment model's status, falling back to the pre-v1
// pending flag. A payment that is not pending in an old LNbits succeeded,
// because old versions deleted failed payments.
func (d *paymentDetails) state() string {
	switch d.Status {
	case stateSuccess, stateFailed, statePending:
		return d.Status
	}
	if d.Pending != nil && !*d.Pending {
		return stateSuccess
	}
	return statePending
}

// payment turns a Payment model returned by a pay request into a Payment.
func (d *paymentDetails) payment(hash timmy.PaymentHash) timmy.Payment {
	p := timmy.Payment{Hash: hash, State: timmy.PaymentPending, FeeSats: d.Fee.sats()}
	// Older versions answered a pay request with only the hash: pending
	// until looked up.
	if d.Status == "" && d.Pending == nil {
		return p
	}
	switch d.state() {
	case stateSuccess:
		p.State = timmy.PaymentSucceeded
	case stateFailed:
		p.State = timmy.PaymentFailed
		p.FailureReason = "lnbits reports the payment failed"
	}
	return p
}

// expiresAt is when an invoice stops being payable: from its BOLT11 when
// LNbits returned it, else from the expiry field, which v1 sends as a naive
// UTC ISO datetime and older versions as a unix timestamp.
func (p *paymentStatus) expiresAt() (time.Time, bool) {
	if p.Details == nil {
		return time.Time{}, false
	}
	for _, pr := range []string{p.Details.Bolt11, p.Details.PaymentRequest} {
		if pr == "" {
			continue
		}
		if d, err := lightning.Decode(pr); err == nil {
			return d.ExpiresAt, true
		}
	}
	return parseExpiry(p.Details.Expiry)
}

func parseExpiry(raw json.RawMessage) (time.Time, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, false
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err == nil && n > 0 {
		return time.Unix(int64(n), 0), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true // layouts without a zone parse as UTC, which LNbits means
		}
	}
	return time.Time{}, false
}

// msat is an LNbits millisatoshi amount. It accepts integers and
// integral floats, since LNbits' Python serialises some amounts as 1000.0,
// and null.
type msat int64

// UnmarshalJSON implements json.Unmarshaler.
func (m *msat) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" || s == "" {
		*m = 0
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*m = msat(n)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt64/2 {
		return fmt.Errorf("lnbits: %s is not a whole msat amount", s)
	}
	*m = msat(f)
	return nil
}

// sats converts to whole sats, rounding up so a reported fee is never
// understated. LNbits stores outgoing amounts and fees as negative numbers,
// so the sign is dropped.
func (m msat) sats() timmy.Sats {
	v := int64(m)
	if v < 0 {
		v = -v
	}
	return timmy.Sats((v + 999) / 1000)
}

// apiError is an error response from LNbits. It unwraps to a coded timmy
// error carrying the same message, so the HTTP layer maps it, while
// PayInvoice can still look at the status.
type apiError struct {
	status   int
	detail   string
	payState string // the "status" LNbits adds to 520 responses: pending or failed
	coded    *timmy.Error
}

func (e *apiError) Error() string { return e.coded.Message }
func (e *apiError) Unwrap() error { return e.coded }

// refused reports whether LNbits answered a pay request by declining it or
// by saying the payment failed, as opposed to an authentication or server
// problem, after which nothing is known.
func (e *apiError) refused() bool {
	switch e.status {
	case 400, 404, 422, statusFundingSource:
		return true
	}
	return false
}

// parseError turns an LNbits error response into a clear message. LNbits
// answers with FastAPI's shapes: {"detail": "text"}, a validation list
// {"detail": [{"loc": [...], "msg": "...", "type": "..."}]} (422, or 400 in
// v1), and on 520 {"detail": "text", "status": "failed"|"pending"}. Very old
// versions used {"message": "text"}.
func parseError(status int, body []byte) error {
	var raw struct {
		Detail  json.RawMessage `json:"detail"`
		Message string          `json:"message"`
		Status  string          `json:"status"`
	}
	detail := ""
	if err := json.Unmarshal(body, &raw); err == nil {
		detail = detailText(raw.Detail)
		if detail == "" {
			detail = raw.Message
		}
	} else {
		detail = snippet(body)
	}
	e := &apiError{status: status, detail: detail, payState: raw.Status}
	code := timmy.EUNAVAILABLE
	var msg string
	switch {
	case status == 401 || status == 403:
		msg = fmt.Sprintf("lnbits: invalid API key (%d)", status)
	case status == 404:
		code = timmy.ENOTFOUND
		msg = "lnbits: not found (404)"
	case status == statusFundingSource:
		msg = "lnbits: funding source error (520)"
	case status == 400 || status == 422:
		msg = "lnbits"
	default:
		msg = fmt.Sprintf("lnbits: HTTP %d", status)
	}
	if detail != "" {
		msg += ": " + detail
	}
	e.coded = timmy.Errorf(code, "%s", msg)
	return e
}

// detailText renders FastAPI's detail, a string or a list of validation
// errors, as one line such as "amount: field required".
func detailText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var list []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if err := json.Unmarshal(raw, &list); err == nil {
		var parts []string
		for _, item := range list {
			var loc []string
			for i, l := range item.Loc {
				ls := fmt.Sprint(l)
				// The first element names where the field was: body,
				// query, path or header. It adds nothing for a reader.
				if i == 0 && len(item.Loc) > 1 && (ls == "body" || ls == "query" || ls == "path" || ls == "header") {
					continue
				}
				loc = append(loc, ls)
			}
			if len(loc) > 0 {
				parts = append(parts, strings.Join(loc, ".")+": "+item.Msg)
			} else {
				parts = append(parts, item.Msg)
			}
		}
		return strings.Join(parts, "; ")
	}
	return snippet(raw)
}

// snippet shortens a non-JSON body, such as a proxy's HTML error page, to
// something fit for an error message.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
