package anthropic

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go"

	"github.com/timmyhq/timmy/agent/llm"
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
func (e *Error) Unwrap() []error { return llm.Unwrap(e.msg, e.err) }

// final is the Caller's Final: the last failure as an *Error, with the
// API's error type.
func final(f llm.Failure, attempts int, msg string) error {
	return &Error{StatusCode: f.Status, Type: f.Code, Attempts: attempts, msg: msg, err: f.Err}
}

// classify reads an attempt's error. res is the attempt's HTTP response,
// when there was one; the SDK's *Error also carries it, with the parsed
// body, for an error status. timeout is the per-attempt limit, for the
// message.
func classify(err error, res *http.Response, timeout time.Duration) llm.Failure {
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		res = apiErr.Response
	}
	return llm.Classify(err, res, timeout, func(res *http.Response, f *llm.Failure) string {
		var raw string
		if apiErr != nil {
			f.Code = string(apiErr.Type())
			raw = apiErr.RawJSON()
		}
		switch code := res.StatusCode; {
		case code == http.StatusPaymentRequired:
			f.What = "billing problem (402)"
		case code == http.StatusTooManyRequests && strings.Contains(raw, "enforced_spend_limit_reached"):
			// A spend cap lasts until the month ends; retrying cannot help.
			f.What = "spend limit reached (429)"
		case code == 529:
			f.What, f.Retry = "overloaded (529)", true
		}
		return apiMessage(raw)
	})
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
	return llm.Shorten(strings.TrimSpace(body.Error.Message), 200)
}
