// Package api holds Timmy's HTTP contract: openapi.yaml is the source of
// truth, and api.gen.go (the server interface, models and Go client) is
// generated from it by oapi-codegen, run as a Go tool.
package api

import _ "embed"

//go:generate go tool oapi-codegen -config oapi-codegen.yaml openapi.yaml

// Spec is the OpenAPI document, served at /api/openapi.yaml and used by
// tests to check every response.
//
//go:embed openapi.yaml
var Spec []byte
