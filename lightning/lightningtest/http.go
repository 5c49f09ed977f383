package lightningtest

import (
	"encoding/json"
	"net/http"
	"sync"
)

// Canned queues responses a fake serves instead of its real handlers, one
// per request in the order queued, so a test can make a node answer with
// anything it might: an error body, or a success carrying the wrong
// invoice. The zero value is an empty queue; it is safe for concurrent use.
type Canned struct {
	mu    sync.Mutex
	queue []canned
}

type canned struct {
	status int
	body   string
}

// Add queues a response with status and a JSON body.
func (c *Canned) Add(status int, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(c.queue, canned{status: status, body: body})
}

// Serve writes the next queued response to w and reports whether there was
// one. When it reports true the request is answered and the fake's own
// handler must not run.
func (c *Canned) Serve(w http.ResponseWriter) bool {
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.mu.Unlock()
		return false
	}
	next := c.queue[0]
	c.queue = c.queue[1:]
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(next.status)
	_, _ = w.Write([]byte(next.body))
	return true
}

// WriteJSON answers with status and v as JSON, as both LNbits and lnd's
// REST proxy do for every unary call.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
