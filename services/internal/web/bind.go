package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
)

// strictJSON decodes request bodies refusing unknown fields and trailing data, with messages
// that say where the body is wrong.
type strictJSON struct{ echo.DefaultJSONSerializer }

func (strictJSON) Deserialize(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON value")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != nil && !errors.Is(terr, io.EOF) {
			err = terr
		}
	}
	if err == nil {
		return nil
	}
	var (
		he  *echo.HTTPError
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &he): // e.g. the body limit tripped while reading
		return he
	case errors.As(err, &se):
		return badRequest(err, "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &ute):
		return badRequest(err, "field %q must be %s, got %s", ute.Field, jsonKind(ute.Type.Kind().String()), ute.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(err, "the JSON body is empty or cut short")
	}
	return badRequest(err, "malformed JSON: %v", err)
}

func badRequest(err error, format string, args ...any) error {
	return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, args...)).SetInternal(err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int32", "int64", "uint", "uint32", "uint64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	}
	return goKind
}

// Validatable is implemented by request types; e.Validator calls it after binding.
type Validatable interface{ Validate() error }

type validator struct{}

func (validator) Validate(i any) error {
	if v, ok := i.(Validatable); ok {
		return v.Validate()
	}
	return nil
}
