package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	sdk "github.com/anthropics/anthropic-sdk-go"

	"github.com/timmyhq/timmy"
)

// Error is a failed call to the Anthropic API. Its message is written for
// a job's errorMessage: it says what went wrong and how often it was tried,
// and never carries the API key or the request. The SDK's own error, with
// the full response, stays reachable through errors.As for logs.
//
// Error also unwraps to a *timmy.Error with code EUNAVAILABLE and the same
// message, so the HTTP layer reports it as a backend failure.
type Error struct {
	// StatusCode is the HTTP status of the last attempt, or 0 when there was
	// no response (a timeout, a refused connection, a cut-off body) or the
	// response was a 200 whose content was unusable.
	StatusCode int
	// Type is the API's error type, such as "overloaded_error", when the
	// response carried one.
	Type string
	// Attempts is how many requests were made before giving up.
	Attempts int

	msg string
	err error
}

// Error returns the caller-safe message.
func (e *Error) Error() string { return e.msg }

// Unwrap exposes the coded domain error and the underlying cause.
func (e *Error) Unwrap() []error {
	errs := []error{&timmy.Error{Code: timmy.EUNAVAILABLE, Message: e.msg}}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// failure is what one attempt's error means for the retry loop.
type failure struct {
	status  int
	apiType string
	what    string        // a short description: "overloaded (529)"
	detail  string        // the API's own message, for errors the operator must fix
	retry   bool          // worth another attempt
	wait    time.Duration // the server's Retry-After, when it sent one
	err     error
}

func (f failure) final(attempts int, apiKey string) *Error {
	msg := "anthropic: " + f.what
	if f.detail != "" {
		detail := f.detail
		if apiKey != "" {
			detail = strings.ReplaceAll(detail, apiKey, "[redacted]")
		}
		msg += ": " + detail
	}
	if f.retry {
		msg += fmt.Sprintf(" after %d %s", attempts, plural(attempts, "attempt"))
	}
	return &Error{StatusCode: f.status, Type: f.apiType, Attempts: attempts, msg: msg, err: f.err}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// classify reads an attempt's error. res is the attempt's HTTP response,
// when there was one; timeout is the per-attempt limit, for the message.
func classify(err error, res *http.Response, timeout time.Duration) failure {
	if errors.Is(err, context.DeadlineExceeded) {
		return failure{what: fmt.Sprintf("no answer within %s", timeout), retry: true, err: err}
	}
	if isConnectionError(err) {
		if res != nil {
			return failure{status: res.StatusCode, what: "response cut off", retry: true, err: err}
		}
		return failure{what: "connection failed", retry: true, err: err}
	}
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		res = apiErr.Response
	}
	if res == nil {
		return failure{what: "connection failed", retry: true, err: err}
	}
	if res.StatusCode < 400 {
		return failure{status: res.StatusCode, what: "malformed response", err: err}
	}

	f := failure{status: res.StatusCode, err: err, wait: retryAfter(res.Header)}
	var raw string
	if apiErr != nil {
		f.apiType = string(apiErr.Type())
		raw = apiErr.RawJSON()
	}
	message := apiMessage(raw)
	code := res.StatusCode
	switch {
	case code == http.StatusBadRequest:
		f.what, f.detail = "request rejected (400)", message
	case code == http.StatusUnauthorized:
		f.what = "invalid API key (401)"
	case code == http.StatusPaymentRequired:
		f.what = "billing problem (402)"
	case code == http.StatusForbidden:
		f.what = "permission denied (403)"
	case code == http.StatusNotFound:
		f.what, f.detail = "not found (404)", message
	case code == http.StatusRequestTimeout:
		f.what, f.retry = "request timeout (408)", true
	case code == http.StatusConflict:
		f.what, f.retry = "conflict (409)", true
	case code == http.StatusRequestEntityTooLarge:
		f.what = "request too large (413)"
	case code == http.StatusTooManyRequests && strings.Contains(raw, "enforced_spend_limit_reached"):
		// A spend cap lasts until the month ends; retrying cannot help.
		f.what = "spend limit reached (429)"
	case code == http.StatusTooManyRequests:
		f.what, f.retry = "rate limited (429)", true
	case code == 529:
		f.what, f.retry = "overloaded (529)", true
	case code == http.StatusServiceUnavailable:
		f.what, f.retry = "unavailable (503)", true
	case code >= 500:
		f.what, f.retry = fmt.Sprintf("server error (%d)", code), true
	default:
		f.what, f.detail = fmt.Sprintf("unexpected status (%d)", code), message
	}
	// The API may say outright whether a retry can help.
	switch res.Header.Get("x-should-retry") {
	case "true":
		f.retry = true
	case "false":
		f.retry = false
	}
	return f
}

// isConnectionError reports whether err is the network failing rather than
// the server answering: a refused or reset connection, or a body cut off
// part-way.
func isConnectionError(err error) bool {
	var netErr net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.As(err, &netErr)
}

// apiMessage pulls error.message out of an Anthropic error body
// ({"type":"error","error":{"type":"...","message":"..."}}), shortened.
func apiMessage(raw string) string {
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(raw), &body) != nil {
		return ""
	}
	return shorten(strings.TrimSpace(body.Error.Message), 200)
}

func shorten(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}

// retryAfter reads the server's requested wait: retry-after-ms, then
// retry-after in seconds or as an HTTP date.
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("retry-after")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// backoff is the wait before retry number n (1-based): exponential from
// base, capped at maxDelay, with jitter over its upper half so that many
// workers retrying together spread out. A server-requested wait wins, but
// is also capped, so a retry never waits longer than maxDelay.
func backoff(n int, base, maxDelay, serverWait time.Duration) time.Duration {
	if serverWait > 0 {
		return min(serverWait, maxDelay)
	}
	d := base << (n - 1)
	if d <= 0 || d > maxDelay {
		d = maxDelay
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
