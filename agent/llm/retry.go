package llm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// Caller makes one provider's API calls under Limits: each attempt with its
// own timeout, transient failures retried with backoff, and the last
// failure turned into the provider's error. Retries are done here rather
// than in the SDKs, so that the backoff is configurable (tests use
// microseconds) and the final error can say how many attempts were made.
type Caller struct {
	// Name is the provider as messages name it, such as "anthropic" or
	// "openai-compatible".
	Name string
	// APIKey is redacted from any API message an error repeats; "" when
	// there is none.
	APIKey string
	// Limits bound the attempts; pass them through Normalize first.
	Limits Limits
	// Classify reads one failed attempt: Classify in this package with the
	// provider's ErrorReader, and whatever the provider's SDK needs first.
	Classify func(err error, res *http.Response, timeout time.Duration) Failure
	// Final builds the provider's error from the last failure, the number
	// of attempts and the caller-safe message (Failure.Message).
	Final func(f Failure, attempts int, msg string) error
}

// Attempt is one try at a call: the SDK's result, the HTTP response when
// there was one (the SDK's WithResponseInto), and the error.
type Attempt[T any] func(ctx context.Context) (T, *http.Response, error)

// Call runs attempt until it succeeds, fails for good, or the retries in
// c.Limits are spent; op names the call ("evaluate", "execute") in the
// error returned when ctx ends. That error wraps ctx.Err() and is not the
// provider's error: the caller gave up (shutdown, or its own deadline),
// which is not the API's failure.
func Call[T any](ctx context.Context, c Caller, op string, attempt Attempt[T]) (T, error) {
	var zero T
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, c.Limits.Timeout)
		v, res, err := attempt(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, fmt.Errorf("%s %s: %w", c.Name, op, ctx.Err())
		}
		f := c.Classify(err, res, c.Limits.Timeout)
		if !f.Retry || n > c.Limits.MaxRetries {
			return zero, c.Final(f, n, f.Message(c.Name, n, c.APIKey))
		}
		t := time.NewTimer(backoff(n, c.Limits.RetryBaseDelay, c.Limits.RetryMaxDelay, f.Wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return zero, fmt.Errorf("%s %s: %w", c.Name, op, ctx.Err())
		}
	}
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
