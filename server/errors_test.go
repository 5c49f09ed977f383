package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/demo"
	"github.com/timmyhq/timmy/internal/apitest"
	"github.com/timmyhq/timmy/server"
)

// do sends a raw request through the spec-checking client and returns the
// status, the decoded error message (if any) and the response.
func do(t *testing.T, in *instance, method, path string, body io.Reader, header http.Header) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, in.URL+path, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apitest.Client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode >= 400 {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "error bodies are JSON: %s", raw)
		require.NoError(t, json.Unmarshal(raw, &e), "error body %q", raw)
		require.NotEmpty(t, e.Error)
	}
	return resp.StatusCode, e.Error, resp
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	huge := `{"request": "` + strings.Repeat("a", 70<<10) + `"}`
	tooLong := `{"request": "` + strings.Repeat("é", 8001) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"missing body", "POST", "/api/jobs", "", 400, ""},
		{"not JSON", "POST", "/api/jobs", "{nope", 400, "decode"},
		{"wrong type", "POST", "/api/jobs", `{"request": 5}`, 400, ""},
		{"missing request", "POST", "/api/jobs", `{}`, 400, "must not be empty"},
		{"blank request", "POST", "/api/jobs", `{"request": "   "}`, 400, "must not be empty"},
		{"request over MAX_REQUEST_CHARS", "POST", "/api/jobs", tooLong, 400, "8001 characters; the limit is 8000"},
		{"body over 64 KiB", "POST", "/api/jobs", huge, 413, "larger than 65536 bytes"},
		{"malformed job id", "GET", "/api/jobs/not-a-uuid", "", 400, ""},
		{"unknown job id", "GET", "/api/jobs/" + uuid.NewString(), "", 404, "job not found"},
		{"refund on unknown job", "POST", "/api/jobs/" + uuid.NewString() + "/refund", `{"paymentRequest": "lnbcrt1"}`, 404, "job not found"},
		{"refund without invoice", "POST", "/api/jobs/" + uuid.NewString() + "/refund", `{}`, 400, "paymentRequest"},
		{"demo without request", "GET", "/api/demo", "", 400, "request"},
		{"demo with empty request", "GET", "/api/demo?request=", "", 400, "must not be empty"},
		{"dev pay bad hash", "POST", "/api/dev/stub/pay/xyz", "", 400, "64 hex"},
		{"dev pay unknown hash", "POST", "/api/dev/stub/pay/" + strings.Repeat("ab", 32), "", 404, "no stub invoice"},
		{"unknown route", "GET", "/api/nope", "", 404, "no route"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			} else if c.method == "POST" {
				body = http.NoBody
			}
			status, msg, _ := do(t, in, c.method, c.path, body, nil)
			require.Equal(t, c.status, status, msg)
			require.Contains(t, msg, c.msg)
		})
	}

	// Bad input never corrupts state: no job was created by any of it.
	counts, err := in.db.CountJobsByState(context.Background())
	require.NoError(t, err)
	require.Empty(t, counts)
}

func TestDevPayTwiceConflicts(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	created := in.createJob(t, "pay me twice")
	in.pay(t, created.EvalInvoice.PaymentHash)
	status, msg, _ := do(t, in, "POST", "/api/dev/stub/pay/"+created.EvalInvoice.PaymentHash, http.NoBody, nil)
	require.Equal(t, 409, status)
	require.Contains(t, msg, "already")
}

func TestDemoRateLimit(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite", demoLimit: 3})
	for i := 0; i < 3; i++ {
		resp, err := in.client.RunDemoWithResponse(context.Background(), &api.RunDemoParams{Request: "hello"})
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
		require.Contains(t, resp.JSON200.Result, "stub agent")
	}
	status, msg, resp := do(t, in, "GET", "/api/demo?request=hello", nil, nil)
	require.Equal(t, 429, status)
	require.Contains(t, msg, "3 requests per hour")
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.True(t, secs > 0 && secs <= 3600, "Retry-After %d", secs)

	// Without trusted proxies, X-Forwarded-For is ignored: a forged header
	// does not escape the limit.
	status, _, _ = do(t, in, "GET", "/api/demo?request=hello", nil, http.Header{"X-Forwarded-For": {"198.51.100.7"}})
	require.Equal(t, 429, status)
}

func TestDemoLimitHoldsAcrossReplicasAndConcurrency(t *testing.T) {
	t.Parallel()
	a := setup(t, options{engine: "sqlite", demoLimit: 5})
	b := setup(t, options{shareWith: a, demoLimit: 5})
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := a
			if i%2 == 1 {
				in = b
			}
			status, _, _ := do(t, in, "GET", "/api/demo?request=hi", nil, nil)
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.Equal(t, map[int]int{200: 5, 429: 15}, statuses)
}

func TestDemoHonoursTrustedProxies(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite", demoLimit: 1, trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	from := func(chain string) int {
		status, _, _ := do(t, in, "GET", "/api/demo?request=hi", nil, http.Header{"X-Forwarded-For": {chain}})
		return status
	}
	require.Equal(t, 200, from("198.51.100.1"))
	require.Equal(t, 429, from("198.51.100.1"))
	require.Equal(t, 200, from("198.51.100.2"), "another client behind the proxy has its own limit")
	// The client can prepend anything; the proxy's own entry is what counts.
	require.Equal(t, 429, from("203.0.113.50, 198.51.100.2"))
}

func TestProductionHasNoDevRoute(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite", production: true})
	created := in.createJob(t, "production job")
	status, msg, _ := do(t, in, "POST", "/api/dev/stub/pay/"+created.EvalInvoice.PaymentHash, http.NoBody, nil)
	require.Equal(t, 404, status)
	require.Contains(t, msg, "no route")
	job, err := in.db.GetJob(context.Background(), created.JobId.String())
	require.NoError(t, err)
	require.Equal(t, "awaiting_eval_payment", string(job.State), "the route did nothing")
}

func TestHealthSpecAndMetrics(t *testing.T) {
	t.Parallel()
	in := setup(t, options{engine: "sqlite"})
	health, err := in.client.GetHealthWithResponse(context.Background())
	require.NoError(t, err)
	require.Equal(t, 200, health.StatusCode())
	require.Equal(t, "sqlite", health.JSON200.Database)

	spec, err := in.client.GetOpenAPIWithResponse(context.Background())
	require.NoError(t, err)
	require.Equal(t, 200, spec.StatusCode())
	require.True(t, bytes.Equal(api.Spec, spec.Body))

	created := in.createJob(t, "metrics")
	_ = created
	resp, err := http.Get(in.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Contains(t, string(raw), `timmy_jobs{state="awaiting_eval_payment"} 1`)
	require.Contains(t, string(raw), `timmy_backend_call_duration_seconds_count{backend="lightning",op="create_invoice",outcome="ok"} 1`)
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxy := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		remote, xff, want string
		trusted           []netip.Prefix
	}{
		{"198.51.100.9:5000", "203.0.113.1", "198.51.100.9", nil},                    // untrusted peer: header ignored
		{"10.0.0.2:5000", "203.0.113.1", "203.0.113.1", proxy},                       // trusted proxy
		{"10.0.0.2:5000", "203.0.113.1:4711", "203.0.113.1", proxy},                  // a port in the entry
		{"10.0.0.2:5000", "[2001:db8::1]:4711", "2001:db8::1", proxy},                // IPv6 with a port
		{"10.0.0.2:5000", "192.0.2.66, 203.0.113.1, 10.0.0.7", "203.0.113.1", proxy}, // rightmost untrusted
		{"10.0.0.2:5000", "garbage", "10.0.0.2", proxy},                              // unreadable: the peer
		{"[::ffff:10.0.0.2]:5000", "203.0.113.1", "203.0.113.1", proxy},              // IPv4-mapped peer
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/api/demo", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		require.Equal(t, c.want, server.ClientIP(r, c.trusted), "%s via %s", c.xff, c.remote)
	}
	require.Equal(t, demo.LimitKey("2001:db8:1:2:aaaa::1"), demo.LimitKey("2001:db8:1:2:bbbb::9"), "one /64, one limit")
	require.NotEqual(t, demo.LimitKey("2001:db8:1:2::1"), demo.LimitKey("2001:db8:1:3::1"))
	require.Equal(t, "203.0.113.1", demo.LimitKey("203.0.113.1"))
}
