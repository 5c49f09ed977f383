package openai

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

	"github.com/timmyhq/timmy"
)

// prefix starts every message: the backend may be OpenAI, Ollama, vLLM or
// llama.cpp, so the message names the protocol rather than a vendor.
const prefix = "openai-compatible: "

// Error is a failed call to the server. Its message is written for a job's
// errorMessage: it says what went wrong and how often it was tried, and
// never carries the API key or the request. The SDK's own error stays
// reachable through errors.As for logs.
//
// Error also unwraps to a *timmy.Error with code EUNAVAILABLE and the same
// message, so the HTTP layer reports it as a backend failure.
type Error struct {
	// StatusCode is the HTTP status of the last attempt, or 0 when there was
	// no response (a timeout, a refused connection, a cut-off body) or the
	// response was a 200 whose content was unusable.
	StatusCode int
	// Code is the server's error code (OpenAI's error.code, such as
	// "invalid_api_key"), when it sent one as a string.
	Code string
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
	status int
	code   string
	what   string        // a short description: "rate limited (429)"
	detail string        // the server's own message, for errors the operator must fix
	retry  bool          // worth another attempt
	wait   time.Duration // the server's Retry-After, when it sent one
	err    error
}

func (f failure) final(attempts int, apiKey string) *Error {
	msg := prefix + f.what
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
	return &Error{StatusCode: f.status, Code: f.code, Attempts: attempts, msg: msg, err: f.err}
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
	if res == nil {
		return failure{what: "connection failed", retry: true, err: err}
	}
	if res.StatusCode < 400 {
		return failure{status: res.StatusCode, what: "malformed response", err: err}
	}

	// The SDK leaves the error body readable on the response. Servers
	// disagree on its shape, so it is read here rather than trusted to the
	// SDK's OpenAI-only parser.
	var raw []byte
	if res.Body != nil {
		raw, _ = io.ReadAll(io.LimitReader(res.Body, 64<<10))
	}
	message, code := apiMessage(raw)
	f := failure{status: res.StatusCode, code: code, err: err, wait: retryAfter(res.Header)}
	status := res.StatusCode
	switch {
	case status == http.StatusBadRequest:
		f.what, f.detail = "request rejected (400)", message
	case status == http.StatusUnauthorized:
		f.what = "invalid API key (401)"
	case status == http.StatusForbidden:
		f.what = "permission denied (403)"
	case status == http.StatusNotFound:
		// Ollama answers an unpulled model with a 404 naming it.
		f.what, f.detail = "not found (404)", message
	case status == http.StatusRequestTimeout:
		f.what, f.retry = "request timeout (408)", true
	case status == http.StatusConflict:
		f.what, f.retry = "conflict (409)", true
	case status == http.StatusRequestEntityTooLarge:
		f.what = "request too large (413)"
	case status == http.StatusTooManyRequests && code == "insufficient_quota":
		// An exhausted quota lasts until someone pays; retrying cannot help.
		f.what = "quota exceeded (429)"
	case status == http.StatusTooManyRequests:
		f.what, f.retry = "rate limited (429)", true
	case status == http.StatusServiceUnavailable:
		// llama.cpp and vLLM answer 503 while a model is loading.
		f.what, f.retry = "unavailable (503)", true
	case status >= 500:
		f.what, f.retry = fmt.Sprintf("server error (%d)", status), true
	default:
		f.what, f.detail = fmt.Sprintf("unexpected status (%d)", status), message
	}
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

// apiMessage reads the message and string code from an error body in any
// of the shapes OpenAI-compatible servers use:
//
//	{"error":{"message":"…","type":"…","code":"invalid_api_key"}}  OpenAI, Ollama, llama.cpp
//	{"object":"error","message":"…","type":"…","code":400}         vLLM
//	{"error":"…"}                                                  others
func apiMessage(raw []byte) (message, code string) {
	var body struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(raw, &body) != nil {
		return "", ""
	}
	var nested struct {
		Message string          `json:"message"`
		Code    json.RawMessage `json:"code"`
	}
	var flat string
	switch {
	case json.Unmarshal(body.Error, &nested) == nil && nested.Message != "":
		message = nested.Message
		_ = json.Unmarshal(nested.Code, &code) // a numeric code is no code
	case json.Unmarshal(body.Error, &flat) == nil:
		message = flat
	default:
		message = body.Message
	}
	return shorten(strings.TrimSpace(message), 200), code
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
