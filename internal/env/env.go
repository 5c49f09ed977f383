// Package env reads Timmy's configuration from environment variables. Every
// read names its default, so the defaults live next to the code that uses
// them, and every secret may instead be read from a file named by NAME_FILE
// (the Docker and Kubernetes secrets convention). Parse errors are collected
// rather than returned one at a time, so an operator sees every mistake in
// one start attempt.
package env

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Reader reads variables from a lookup function and remembers parse errors.
type Reader struct {
	lookup func(string) (string, bool)
	errs   []error
}

// New returns a Reader over lookup, which is os.LookupEnv in production and
// a map in tests.
func New(lookup func(string) (string, bool)) *Reader {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &Reader{lookup: lookup}
}

// FromMap returns a Reader over a fixed map, for tests.
func FromMap(m map[string]string) *Reader {
	return New(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

// Err returns every parse error seen so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

func (r *Reader) raw(name string) (string, bool) {
	v, ok := r.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// Set reports whether name (or, for secrets, name_FILE) is set and non-empty.
func (r *Reader) Set(name string) bool {
	_, ok := r.raw(name)
	if !ok {
		_, ok = r.raw(name + "_FILE")
	}
	return ok
}

// String returns the variable, or def when it is unset or empty.
func (r *Reader) String(name, def string) string {
	if v, ok := r.raw(name); ok {
		return v
	}
	return def
}

// Secret returns the variable, or the trimmed contents of the file named by
// name_FILE, or "" when neither is set.
func (r *Reader) Secret(name string) string {
	if v, ok := r.raw(name); ok {
		return v
	}
	path, ok := r.raw(name + "_FILE")
	if !ok {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s_FILE: %w", name, err))
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Int returns the variable as an integer, or def.
func (r *Reader) Int(name string, def int64) int64 {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %q is not an integer", name, v))
		return def
	}
	return n
}

// Float returns the variable as a float, or def.
func (r *Reader) Float(name string, def float64) float64 {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %q is not a number", name, v))
		return def
	}
	return f
}

// Bool returns the variable as a boolean (true/false/1/0), or def.
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %q is not a boolean", name, v))
		return def
	}
	return b
}

// Duration returns the variable as a Go duration ("30s", "5m"), or def.
func (r *Reader) Duration(name string, def time.Duration) time.Duration {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %q is not a duration like 30s", name, v))
		return def
	}
	return d
}

// List returns the comma-separated variable as trimmed, non-empty items, or
// def.
func (r *Reader) List(name string, def []string) []string {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Fail records a configuration error found by the caller, such as two
// settings that contradict each other.
func (r *Reader) Fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf(format, args...))
}
