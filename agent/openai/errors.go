package openai

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/timmyhq/timmy/agent/llm"
)

// name starts every message: the backend may be OpenAI, Ollama, vLLM or
// llama.cpp, so the message names the protocol rather than a vendor.
const name = "openai-compatible"

// prefix starts every message this package writes itself.
const prefix = name + ": "

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
func (e *Error) Unwrap() []error { return llm.Unwrap(e.msg, e.err) }

// final is the Caller's Final: the last failure as an *Error, with the
// server's error code.
func final(f llm.Failure, attempts int, msg string) error {
	return &Error{StatusCode: f.Status, Code: f.Code, Attempts: attempts, msg: msg, err: f.Err}
}

// classify reads an attempt's error. res is the attempt's HTTP response,
// when there was one; timeout is the per-attempt limit, for the message.
func classify(err error, res *http.Response, timeout time.Duration) llm.Failure {
	return llm.Classify(err, res, timeout, readError)
}

// readError is the ErrorReader for OpenAI-compatible servers. The SDK
// leaves the error body readable on the response. Servers disagree on its
// shape, so it is read here rather than trusted to the SDK's OpenAI-only
// parser.
func readError(res *http.Response, f *llm.Failure) string {
	var raw []byte
	if res.Body != nil {
		raw, _ = io.ReadAll(io.LimitReader(res.Body, 64<<10))
	}
	message, code := apiMessage(raw)
	f.Code = code
	if res.StatusCode == http.StatusTooManyRequests && code == "insufficient_quota" {
		// An exhausted quota lasts until someone pays; retrying cannot help.
		f.What = "quota exceeded (429)"
	}
	return message
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
	return llm.Shorten(strings.TrimSpace(message), 200), code
}
