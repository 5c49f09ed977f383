package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/timmyhq/timmy"
)

// statusOf maps a coded error to its HTTP status. This is the only place
// where application errors become HTTP statuses.
func statusOf(code string) int {
	switch code {
	case timmy.EINVALID:
		return http.StatusBadRequest
	case timmy.ENOTFOUND:
		return http.StatusNotFound
	case timmy.ECONFLICT:
		return http.StatusConflict
	case timmy.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case timmy.ERATELIMIT:
		return http.StatusTooManyRequests
	case timmy.EUNAVAILABLE:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// errorWriter writes every error response as {"error": "..."}; internal
// errors are logged and their details hidden from the caller.
type errorWriter struct{ log *slog.Logger }

func (e errorWriter) write(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		err = timmy.Errorf(timmy.ETOOLARGE, "request body is larger than %d bytes", tooLarge.Limit)
	}
	code := timmy.ErrorCode(err)
	status := statusOf(code)
	if code == timmy.EINTERNAL {
		e.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if code == timmy.EUNAVAILABLE {
		e.log.Warn("backend unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var coded *timmy.Error
	if errors.As(err, &coded) && coded.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(coded.RetryAfter.Seconds()+0.999)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": timmy.ErrorMessage(err)})
}

// requestError is for errors in decoding a request: bad JSON or bad
// parameters are the caller's fault, unless the body was too large.
func (e errorWriter) requestError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) || timmy.ErrorCode(err) != timmy.EINTERNAL {
		e.write(w, r, err)
		return
	}
	e.write(w, r, timmy.Errorf(timmy.EINVALID, "%v", err))
}
