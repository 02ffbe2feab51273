// Package envconf fills typed configuration from environment variables, collecting every
// problem so that a service fails at start-up with one message that names each bad variable.
package envconf

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Reader reads variables through getenv (os.Getenv in main, a map in tests).
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New returns a Reader over getenv.
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// String returns the variable, or def when it is unset or empty.
func (r *Reader) String(key, def string) string {
	if v := strings.TrimSpace(r.getenv(key)); v != "" {
		return v
	}
	return def
}

// Int returns the variable as an integer, or def.
func (r *Reader) Int(key string, def int) int {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.Fail(key, "must be a whole number, got %q", v)
		return def
	}
	return n
}

// Float returns the variable as a number, or def.
func (r *Reader) Float(key string, def float64) float64 {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		r.Fail(key, "must be a number such as 1 or 0.5, got %q", v)
		return def
	}
	return f
}

// Duration returns the variable as a Go duration ("5s", "250ms"), or def.
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.Fail(key, "must be a positive duration such as 5s or 250ms, got %q", v)
		return def
	}
	return d
}

// List returns the comma-separated variable as a list with empty items dropped.
func (r *Reader) List(key string) []string {
	var out []string
	for _, s := range strings.Split(r.getenv(key), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Fail records a problem with key.
func (r *Reader) Fail(key, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s %s", key, fmt.Sprintf(format, args...)))
}

// Err returns every recorded problem joined, or nil.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(r.errs...))
}

// Bool returns the variable as a boolean (true/false, 1/0, yes/no), or def.
func (r *Reader) Bool(key string, def bool) bool {
	switch v := strings.ToLower(strings.TrimSpace(r.getenv(key))); v {
	case "":
		return def
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	default:
		r.Fail(key, "must be true or false, got %q", v)
		return def
	}
}
