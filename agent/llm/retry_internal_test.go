package llm

import (
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
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

func TestClassifyStatuses(t *testing.T) {
	t.Parallel()
	noSpecials := func(*http.Response, *Failure) string { return "the API's words" }
	cases := []struct {
		status int
		header http.Header
		what   string
		detail string
		retry  bool
	}{
		{400, nil, "request rejected (400)", "the API's words", false},
		{401, nil, "invalid API key (401)", "", false},
		{403, nil, "permission denied (403)", "", false},
		{404, nil, "not found (404)", "the API's words", false},
		{408, nil, "request timeout (408)", "", true},
		{409, nil, "conflict (409)", "", true},
		{413, nil, "request too large (413)", "", false},
		{429, nil, "rate limited (429)", "", true},
		{503, nil, "unavailable (503)", "", true},
		{500, nil, "server error (500)", "", true},
		{529, nil, "server error (529)", "", true},
		{418, nil, "unexpected status (418)", "the API's words", false},
		// The server may say outright whether a retry can help.
		{500, http.Header{"X-Should-Retry": {"false"}}, "server error (500)", "", false},
		{400, http.Header{"X-Should-Retry": {"true"}}, "request rejected (400)", "the API's words", true},
	}
	for _, c := range cases {
		res := &http.Response{StatusCode: c.status, Header: c.header}
		if res.Header == nil {
			res.Header = http.Header{}
		}
		f := Classify(errors.New("status"), res, time.Second, noSpecials)
		require.Equal(t, c.status, f.Status)
		require.Equal(t, c.what, f.What, "status %d", c.status)
		require.Equal(t, c.detail, f.Detail, "status %d", c.status)
		require.Equal(t, c.retry, f.Retry, "status %d %v", c.status, c.header)
	}
}

func TestClassifyLetsTheProviderSettleItsOwnStatuses(t *testing.T) {
	t.Parallel()
	res := &http.Response{StatusCode: 529, Header: http.Header{"Retry-After": {"2"}}}
	f := Classify(errors.New("status"), res, time.Second, func(_ *http.Response, f *Failure) string {
		f.Code, f.What, f.Retry = "overloaded_error", "overloaded (529)", true
		return "Overloaded"
	})
	require.Equal(t, Failure{Status: 529, Code: "overloaded_error", What: "overloaded (529)", Retry: true, Wait: 2 * time.Second, Err: f.Err}, f)
}

func TestClassifyFailuresWithoutAnErrorStatus(t *testing.T) {
	t.Parallel()
	unread := func(*http.Response, *Failure) string { panic("an error body was read without an error status") }
	f := Classify(context.DeadlineExceeded, nil, 100*time.Millisecond, unread)
	require.Equal(t, "no answer within 100ms", f.What)
	require.True(t, f.Retry)

	f = Classify(syscall.ECONNREFUSED, nil, time.Second, unread)
	require.Equal(t, "connection failed", f.What)
	require.True(t, f.Retry)

	f = Classify(io.ErrUnexpectedEOF, &http.Response{StatusCode: 200}, time.Second, unread)
	require.Equal(t, "response cut off", f.What)
	require.Equal(t, 200, f.Status)
	require.True(t, f.Retry)

	f = Classify(errors.New("no response"), nil, time.Second, unread)
	require.Equal(t, "connection failed", f.What)

	f = Classify(errors.New("bad JSON"), &http.Response{StatusCode: 200}, time.Second, unread)
	require.Equal(t, "malformed response", f.What)
	require.False(t, f.Retry)
}
