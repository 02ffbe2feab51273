// Package fault defines the kinds of failure the services report, so that domain code can say
// what went wrong without knowing about HTTP, and the web layer can map each kind to a status
// in one place.
package fault

import (
	"errors"
	"strings"
	"time"
)

// Kinds of failure. Domain errors wrap one of these; callers compare with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrInvalid         = errors.New("invalid input")
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
	ErrUnavailable     = errors.New("dependency unavailable")
	ErrTooMany         = errors.New("too many requests")
)

// Error is a failure of a known kind with a message meant for the client.
type Error struct {
	Kind    error
	Message string
	// RetryAfter, when set, tells the client how long to wait before trying again.
	RetryAfter time.Duration
}

// New returns an error of the given kind whose message is safe to show to clients.
func New(kind error, message string) *Error { return &Error{Kind: kind, Message: message} }

// Retry returns an error of the given kind that the client may retry after the given time.
func Retry(kind error, message string, after time.Duration) *Error {
	return &Error{Kind: kind, Message: message, RetryAfter: after}
}

func (e *Error) Error() string        { return e.Message }
func (e *Error) Is(target error) bool { return target == e.Kind }

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Validation collects field errors; it is an ErrInvalid once it holds any.
type Validation struct {
	Fields []FieldError
}

// Add records that field is invalid and why.
func (v *Validation) Add(field, message string) {
	v.Fields = append(v.Fields, FieldError{Field: field, Message: message})
}

// Check records the message when ok is false.
func (v *Validation) Check(ok bool, field, message string) {
	if !ok {
		v.Add(field, message)
	}
}

// Err returns nil when nothing was recorded, else the validation as an error.
func (v *Validation) Err() error {
	if len(v.Fields) == 0 {
		return nil
	}
	return v
}

func (v *Validation) Error() string {
	parts := make([]string, len(v.Fields))
	for i, f := range v.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

func (v *Validation) Is(target error) bool { return target == ErrInvalid }
