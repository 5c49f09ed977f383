package store

import (
	"context"
	"fmt"
	"time"
)

// HitDemo counts one demo call by client in the window starting at
// windowStart, atomically, and returns the count so far.
func (s *DB) HitDemo(ctx context.Context, client string, windowStart time.Time) (int64, error) {
	var calls int64
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO demo_usage (client, window_start, calls) VALUES ($1, $2, 1)
		ON CONFLICT (client, window_start) DO UPDATE SET calls = demo_usage.calls + 1
		RETURNING calls`), client, ms(windowStart)).Scan(&calls)
	if err != nil {
		return 0, fmt.Errorf("count demo call: %w", err)
	}
	return calls, nil
}

// PruneDemoUsage deletes demo counters for windows that ended before cutoff.
func (s *DB) PruneDemoUsage(ctx context.Context, cutoff time.Time) error {
	if _, err := s.exec(ctx, nil, `DELETE FROM demo_usage WHERE window_start < $1`, ms(cutoff)); err != nil {
		return fmt.Errorf("prune demo usage: %w", err)
	}
	return nil
}
