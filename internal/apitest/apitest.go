// Package apitest checks, in tests, that every HTTP response the service
// sends matches api/openapi.yaml. Tests talk to the server through Client,
// whose transport validates each response with kin-openapi and fails the
// test on any mismatch.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/timmyhq/timmy/api"
)

var (
	loadOnce sync.Once
	router   routers.Router
	loadErr  error
)

func specRouter() (routers.Router, error) {
	loadOnce.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(api.Spec)
		if err != nil {
			loadErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			loadErr = err
			return
		}
		doc.Servers = nil // match any host the test server listens on
		router, loadErr = legacy.NewRouter(doc)
	})
	return router, loadErr
}

// Client returns an HTTP client whose every response is checked against the
// spec. Responses on paths the spec does not have must still be JSON errors.
func Client(t testing.TB) *http.Client {
	t.Helper()
	r, err := specRouter()
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	return &http.Client{Transport: &validator{t: t, router: r, next: http.DefaultTransport}}
}

type validator struct {
	t      testing.TB
	router routers.Router
	next   http.RoundTripper
}

func (v *validator) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if req.URL.Path == "/metrics" {
		return resp, nil // Prometheus' own format, not part of the API
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	route, params, err := v.router.FindRoute(req)
	if err != nil {
		// Not in the spec: only a JSON error is acceptable.
		var e struct {
			Error *string `json:"error"`
		}
		if resp.StatusCode < 400 || json.Unmarshal(body, &e) != nil || e.Error == nil {
			v.t.Errorf("%s %s: status %d off-spec response %q", req.Method, req.URL.Path, resp.StatusCode, body)
		}
		return resp, nil
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), input); err != nil {
		v.t.Errorf("%s %s: status %d response does not match openapi.yaml: %v\nbody: %s",
			req.Method, req.URL.Path, resp.StatusCode, strings.ReplaceAll(err.Error(), "\n", " | "), body)
	}
	return resp, nil
}
