package server_test

import (
	"context"
	"testing"

	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/store/storetest"
)

// BenchmarkCreateJob measures POST /api/jobs end to end on a listening
// server: validation, a signed stub hold invoice, and the job, invoice and
// event rows in one transaction.
func BenchmarkCreateJob(b *testing.B) {
	for _, engine := range storetest.Engines(b) {
		b.Run(string(engine), func(b *testing.B) {
			in := setup(b, options{engine: engine})
			body := api.CreateJobJSONRequestBody{Request: "Write a haiku about Lightning payments"}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := in.client.CreateJobWithResponse(context.Background(), body)
				if err != nil || resp.StatusCode() != 201 {
					b.Fatalf("create: %v %s", err, resp.Body)
				}
			}
		})
	}
}

// BenchmarkGetJob measures GET /api/jobs/{id}, the read buyers poll, with
// the response checked against the spec as in every test.
func BenchmarkGetJob(b *testing.B) {
	for _, engine := range storetest.Engines(b) {
		b.Run(string(engine), func(b *testing.B) {
			in := setup(b, options{engine: engine})
			id := in.createJob(b, "read me").JobId
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := in.client.GetJobWithResponse(context.Background(), id)
				if err != nil || resp.StatusCode() != 200 {
					b.Fatalf("get: %v", err)
				}
			}
		})
	}
}
