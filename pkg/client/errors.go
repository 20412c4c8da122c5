package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// APIError is an error answer of the API: its HTTP status and the message
// of its {"error": "..."} body. errors.Is matches it against the sentinel
// of its status:
//
//	400 ErrBadRequest        unreadable body, unknown field, PATCH changing nothing
//	401 ErrUnauthorized      no token, or one the reporter does not know
//	403 ErrForbidden         the token's scope is too small (or a cross-origin browser request)
//	404 ErrNotFound          unknown launch (also launch.ErrNotFound) or route
//	409 launch.ErrConflict   a transition the launch's status refuses
//	413 ErrTooLarge          a request body over the API's limit
//	422 launch.ErrInvalid    a launch, rule, ramp, gate or reason that does not validate
//	503 ErrUnavailable       NATS or ClickHouse not reachable yet: retry later
//
// so a caller tests errors.Is(err, launch.ErrConflict) as the reporter does.
type APIError struct {
	Status  int
	Message string
}

// Error reads "<status> <status text>: <message>".
func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Sentinels of the statuses that have no sentinel in pkg/launch.
var (
	// ErrBadRequest matches an APIError with status 400.
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized matches an APIError with status 401.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden matches an APIError with status 403.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound matches an APIError with status 404.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge matches an APIError with status 413.
	ErrTooLarge = errors.New("request too large")
	// ErrUnavailable matches an APIError with status 503.
	ErrUnavailable = errors.New("unavailable")
)

// Is reports whether target is the sentinel of e's status.
func (e *APIError) Is(target error) bool {
	switch e.Status {
	case http.StatusBadRequest:
		return target == ErrBadRequest
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrForbidden
	case http.StatusRequestEntityTooLarge:
		return target == ErrTooLarge
	case http.StatusNotFound:
		return target == ErrNotFound || target == launch.ErrNotFound
	case http.StatusConflict:
		return target == launch.ErrConflict
	case http.StatusUnprocessableEntity:
		return target == launch.ErrInvalid
	case http.StatusServiceUnavailable:
		return target == ErrUnavailable
	}
	return false
}
