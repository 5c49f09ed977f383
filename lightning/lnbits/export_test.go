package lnbits

import "time"

// SetNow replaces the client's clock, so tests can look at an invoice from
// after its expiry without waiting.
func SetNow(c *Client, now func() time.Time) { c.now = now }

// SetPing shortens the websocket ping schedule, so a test can see a silent
// connection reported.
func SetPing(c *Client, every, timeout time.Duration) {
	c.ping = pinging{every: every, timeout: timeout}
}
