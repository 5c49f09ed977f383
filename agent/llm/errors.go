package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/timmyhq/timmy"
)

// Failure is what one failed attempt means for the retry loop, and what
// the provider's final error is built from. Providers get one from
// Classify rather than building it, so that every agent retries the same
// failures and describes them in the same words.
type Failure struct {
	// Status is the HTTP status of the attempt, or 0 when there was no
	// response.
	Status int
	// Code is the API's own name for the error, when its body carried one:
	// Anthropic's error type ("overloaded_error") or OpenAI's error code
	// ("invalid_api_key"). The provider's error type exposes it.
	Code string
	// What is a short description with the status, such as
	// "overloaded (529)"; it is the heart of the caller-safe message.
	What string
	// Detail is the API's own message, kept only for the errors an
	// operator must fix (a rejected request, an unknown model).
	Detail string
	// Retry says another attempt is worth making.
	Retry bool
	// Wait is the server's Retry-After, when it sent one.
	Wait time.Duration
	// Err is the attempt's error, kept for logs through errors.As.
	Err error
}

// Message is the caller-safe message for f after attempts: name (the
// provider, as in "anthropic"), what went wrong, the API's detail with
// apiKey redacted, and for a retryable failure how often it was tried. It
// is written for a job's errorMessage, so it never carries the request.
func (f Failure) Message(name string, attempts int, apiKey string) string {
	msg := name + ": " + f.What
	if f.Detail != "" {
		detail := f.Detail
		if apiKey != "" {
			detail = strings.ReplaceAll(detail, apiKey, "[redacted]")
		}
		msg += ": " + detail
	}
	if f.Retry {
		msg += fmt.Sprintf(" after %d %s", attempts, plural(attempts, "attempt"))
	}
	return msg
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// ErrorReader is a provider's half of classifying an error response (a
// status of 400 or more). It reads the body, sets f.Code from it, and
// returns the API's message, shortened, for Detail. For a status the
// provider treats specially (Anthropic's 529, a spend limit or exhausted
// quota that no retry can fix) it also sets f.What and f.Retry; when it
// leaves What empty, Classify describes the status the way every API uses
// it.
type ErrorReader func(res *http.Response, f *Failure) (message string)

// Classify reads one failed attempt. res is the attempt's HTTP response,
// when there was one; timeout is the per-attempt limit, for the message.
// A timeout, a dropped connection and an unusable 2xx are the same for
// every provider; an error status goes through read first, then the
// common meaning of its status, and last the server's x-should-retry,
// which may say outright whether a retry can help.
func Classify(err error, res *http.Response, timeout time.Duration, read ErrorReader) Failure {
	if errors.Is(err, context.DeadlineExceeded) {
		return Failure{What: fmt.Sprintf("no answer within %s", timeout), Retry: true, Err: err}
	}
	if isConnectionError(err) {
		if res != nil {
			return Failure{Status: res.StatusCode, What: "response cut off", Retry: true, Err: err}
		}
		return Failure{What: "connection failed", Retry: true, Err: err}
	}
	if res == nil {
		return Failure{What: "connection failed", Retry: true, Err: err}
	}
	if res.StatusCode < 400 {
		return Failure{Status: res.StatusCode, What: "malformed response", Err: err}
	}

	f := Failure{Status: res.StatusCode, Err: err, Wait: retryAfter(res.Header)}
	message := read(res, &f)
	if f.What == "" {
		describe(&f, message)
	}
	switch res.Header.Get("x-should-retry") {
	case "true":
		f.Retry = true
	case "false":
		f.Retry = false
	}
	return f
}

// describe sets what an error status means to every LLM API, and whether
// a retry can help. message, the API's own, is kept for the statuses an
// operator must act on.
func describe(f *Failure, message string) {
	switch code := f.Status; {
	case code == http.StatusBadRequest:
		f.What, f.Detail = "request rejected (400)", message
	case code == http.StatusUnauthorized:
		f.What = "invalid API key (401)"
	case code == http.StatusForbidden:
		f.What = "permission denied (403)"
	case code == http.StatusNotFound:
		// An unknown model: Ollama's 404 names the one not pulled.
		f.What, f.Detail = "not found (404)", message
	case code == http.StatusRequestTimeout:
		f.What, f.Retry = "request timeout (408)", true
	case code == http.StatusConflict:
		f.What, f.Retry = "conflict (409)", true
	case code == http.StatusRequestEntityTooLarge:
		f.What = "request too large (413)"
	case code == http.StatusTooManyRequests:
		f.What, f.Retry = "rate limited (429)", true
	case code == http.StatusServiceUnavailable:
		// llama.cpp and vLLM answer 503 while a model is loading.
		f.What, f.Retry = "unavailable (503)", true
	case code >= 500:
		f.What, f.Retry = fmt.Sprintf("server error (%d)", code), true
	default:
		f.What, f.Detail = fmt.Sprintf("unexpected status (%d)", code), message
	}
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

// Unwrap is what a provider's error unwraps to: a *timmy.Error with code
// EUNAVAILABLE and the caller-safe message msg, so the HTTP layer and the
// job report it as a backend failure, then cause (when not nil), so the
// SDK's own error stays reachable through errors.As for logs.
func Unwrap(msg string, cause error) []error {
	errs := []error{&timmy.Error{Code: timmy.EUNAVAILABLE, Message: msg}}
	if cause != nil {
		errs = append(errs, cause)
	}
	return errs
}
