package anthropic

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffDoublesWithJitterAndIsCapped(t *testing.T) {
	t.Parallel()
	base, maxDelay := 100*time.Millisecond, time.Second
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 50 {
			d := backoff(n, base, maxDelay, 0)
			require.GreaterOrEqual(t, d, want/2, "retry %d", n)
			require.LessOrEqual(t, d, want, "retry %d", n)
		}
	}
	// A server's Retry-After wins, but never beyond the cap.
	require.Equal(t, 300*time.Millisecond, backoff(1, base, maxDelay, 300*time.Millisecond))
	require.Equal(t, maxDelay, backoff(1, base, maxDelay, time.Hour))
}

func TestRetryAfterHeaders(t *testing.T) {
	t.Parallel()
	require.Equal(t, 1500*time.Millisecond, retryAfter(http.Header{"Retry-After-Ms": {"1500"}}))
	require.Equal(t, 7*time.Second, retryAfter(http.Header{"Retry-After": {"7"}}))
	require.Zero(t, retryAfter(http.Header{"Retry-After": {"soon"}}))
	require.Zero(t, retryAfter(http.Header{}))
	d := retryAfter(http.Header{"Retry-After": {time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)}})
	require.Greater(t, d, 50*time.Second)
}
