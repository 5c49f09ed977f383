package timmy

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. Each maps to exactly one HTTP status in the server package;
// everything that is not a *Error is treated as EINTERNAL.
const (
	EINVALID     = "invalid"      // the caller sent bad input (400)
	ENOTFOUND    = "not_found"    // no such thing (404)
	ECONFLICT    = "conflict"     // the thing is not in a state that allows this (409)
	ETOOLARGE    = "too_large"    // the request body is too large (413)
	ERATELIMIT   = "rate_limited" // the caller must wait (429)
	EINTERNAL    = "internal"     // our fault; logged, message hidden (500)
	EUNAVAILABLE = "unavailable"  // a backend we depend on failed (502/503)
)

// Error is Timmy's one coded application error. Its Message is safe to show
// to the caller; internal details stay in wrapped errors and logs.
type Error struct {
	Code    string
	Message string
	// RetryAfter tells a rate-limited caller how long to wait.
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds a coded error with a formatted, caller-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// EINTERNAL when there is none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err: the coded error's own
// message, or a generic one for internal errors, whose details must not leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
