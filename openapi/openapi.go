// Package openapi holds the OpenAPI 3.0.3 document of the mailcluster
// REST API (openapi.yaml), embedded in the binary and served by the api
// package at GET /openapi.yaml. Problem documents follow RFC 9457; HTTP
// Basic authentication follows RFC 7617.
package openapi

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

// Spec is the raw OpenAPI document (YAML). Callers must not modify it.
//
//go:embed openapi.yaml
var Spec []byte

// Load parses Spec and validates it against the OpenAPI 3 rules. Each call
// returns a fresh document, so callers may keep or change it freely.
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(Spec)
	if err != nil {
		return nil, fmt.Errorf("openapi: parse: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: validate: %w", err)
	}
	return doc, nil
}
