package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// MIMEProblemJSON is the media type of RFC 9457 problem details.
const MIMEProblemJSON = "application/problem+json"

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type      string             `json:"type"`
	Title     string             `json:"title"`
	Status    int                `json:"status"`
	Detail    string             `json:"detail,omitempty"`
	Instance  string             `json:"instance,omitempty"`
	RequestID string             `json:"request_id,omitempty"`
	Errors    []fault.FieldError `json:"errors,omitempty"`
}

// toProblem maps any error a handler or middleware returned to the response the client gets.
// This is the only place where errors become statuses.
func toProblem(err error, bodyLimit int) Problem {
	var (
		he  *echo.HTTPError
		val *fault.Validation
		fe  *fault.Error
	)
	p := Problem{Type: "about:blank"}
	switch {
	case errors.As(err, &val):
		p.Status, p.Detail, p.Errors = http.StatusUnprocessableEntity, "the request has invalid fields; see errors", val.Fields
	case errors.As(err, &fe):
		p.Status, p.Detail = kindStatus(fe.Kind), fe.Message
	case errors.As(err, &he):
		p.Status, p.Detail = he.Code, httpErrorDetail(he, bodyLimit)
	case errors.Is(err, context.DeadlineExceeded):
		p.Status, p.Detail = http.StatusServiceUnavailable, "the request did not finish in time; retry later"
	case errors.Is(err, context.Canceled):
		// The client went away; the status is for the log only.
		p.Status, p.Detail = 499, "the request was cancelled"
	default:
		p.Status, p.Detail = kindStatus(err), ""
	}
	if p.Status == http.StatusInternalServerError {
		p.Detail = "internal error; quote the request id when reporting it"
	}
	p.Title = http.StatusText(p.Status)
	if p.Title == "" {
		p.Title = "Client Closed Request"
	}
	return p
}

// StatusOf is the HTTP status the error handler answers err with.
func StatusOf(err error) int { return toProblem(err, 0).Status }

func kindStatus(err error) int {
	switch {
	case errors.Is(err, fault.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, fault.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, fault.ErrInvalid):
		return http.StatusUnprocessableEntity
	case errors.Is(err, fault.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, fault.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, fault.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, fault.ErrTooMany):
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// httpErrorDetail rewrites echo's terse built-in messages into ones that say what to fix.
func httpErrorDetail(he *echo.HTTPError, bodyLimit int) string {
	switch he.Code {
	case http.StatusRequestEntityTooLarge:
		return "the request body is larger than " + humanBytes(bodyLimit)
	case http.StatusUnsupportedMediaType:
		return "send the body as JSON with Content-Type: application/json"
	case http.StatusServiceUnavailable:
		if errors.Is(he.Internal, context.DeadlineExceeded) {
			return "the request did not finish in time; retry later"
		}
	}
	if msg, ok := he.Message.(string); ok {
		return msg
	}
	return fmt.Sprint(he.Message)
}

// errorHandler writes err as problem+json. It does not log: the request logger logs every
// request once, error included.
func errorHandler(bodyLimit int) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := toProblem(err, bodyLimit)
		p.Instance = c.Request().URL.Path
		p.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
		if p.Status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", wwwAuthenticate(p.Detail))
		}
		var fe *fault.Error
		if errors.As(err, &fe) && fe.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fe.RetryAfter.Seconds()))))
		}
		if err := writeProblem(c, p); err != nil {
			slog.Default().Debug("writing problem response", "error", err)
		}
	}
}

func wwwAuthenticate(detail string) string {
	return fmt.Sprintf(`Bearer realm="shopmesh", error="invalid_token", error_description=%q`, detail)
}

func writeProblem(c echo.Context, p Problem) error {
	status := p.Status
	if status == 499 { // nobody is listening; don't write a non-standard code
		return nil
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(status)
	}
	c.Response().Header().Set(echo.HeaderContentType, MIMEProblemJSON)
	c.Response().WriteHeader(status)
	return echo.DefaultJSONSerializer{}.Serialize(c, p, "")
}

// WriteProblem writes a problem+json response outside echo's error handling, for code that
// holds only the http.ResponseWriter (a reverse proxy's error handler).
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail,
		Instance: r.URL.Path, RequestID: w.Header().Get(echo.HeaderXRequestID)}
	w.Header().Set(echo.HeaderContentType, MIMEProblemJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}
