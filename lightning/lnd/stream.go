package lnd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	timmy "github.com/timmyhq/timmy"
)

// stream reads a grpc-gateway server stream: JSON objects, one per line,
// each {"result": message} or {"error": status}.
type stream struct {
	body   io.ReadCloser
	dec    *json.Decoder
	cancel context.CancelFunc
	what   string
}

// openStream starts a streaming call. Its context lives until Close, but
// the wait for the response headers is bounded by Timeout (or by the
// caller's own deadline): grpc-gateway sends headers only with the first
// message, so a stream with nothing to say yet cannot be told apart from a
// dead server. Callers that may wait longer for a first message, such as
// SubscribeInvoices, pass firstTimeout 0.
func (c *Client) openStream(ctx context.Context, method, path string, query url.Values, body any, firstTimeout time.Duration) (*stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	var timer *time.Timer
	if firstTimeout > 0 {
		timer = time.AfterFunc(firstTimeout, cancel)
	}
	resp, err := c.send(ctx, method, path, query, body)
	if timer != nil && !timer.Stop() {
		// The timer fired: ctx is cancelled.
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s %s: no answer within %s", method, path, firstTimeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		cancel()
		return nil, parseError(resp.StatusCode, data)
	}
	return &stream{body: resp.Body, dec: json.NewDecoder(resp.Body), cancel: cancel, what: method + " " + path}, nil
}

// next decodes the next message into out. It returns io.EOF when lnd ended
// the stream cleanly, and an *apiError when lnd sent an error message.
func (s *stream) next(out any) error {
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := s.dec.Decode(&msg); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s: stream broken: %v", s.what, err)
	}
	if len(msg.Error) > 0 && string(msg.Error) != "null" {
		return parseError(http.StatusOK, []byte(`{"error":`+string(msg.Error)+`}`))
	}
	if len(msg.Result) == 0 {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s: stream message has neither result nor error", s.what)
	}
	if err := json.Unmarshal(msg.Result, out); err != nil {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s: malformed stream message: %v", s.what, err)
	}
	return nil
}

// Close ends the stream.
func (s *stream) Close() {
	s.cancel()
	s.body.Close()
}

// ended turns a stream's end into an error, for streams that should not
// end.
func (s *stream) ended(err error) error {
	if errors.Is(err, io.EOF) {
		return timmy.Errorf(timmy.EUNAVAILABLE, "lnd: %s: stream ended by server", s.what)
	}
	return fmt.Errorf("%s: %w", s.what, err)
}
