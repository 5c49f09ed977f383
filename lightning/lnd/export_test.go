package lnd

import "time"

// SetNow replaces the client's clock, so tests can look at an invoice from
// after its expiry without waiting.
func SetNow(c *Client, now func() time.Time) { c.now = now }
