package store

import (
	"context"
	"fmt"
)

// LoadCursor returns a subscription's saved resume point, or 0.
func (s *DB) LoadCursor(ctx context.Context, name string) (uint64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM cursors WHERE name = $1`), name).Scan(&v)
	if isNoRows(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load cursor %s: %w", name, err)
	}
	return uint64(v), nil
}

// SaveCursor stores a subscription's resume point. It never moves a cursor
// backwards, so two replicas saving at once cannot lose progress.
func (s *DB) SaveCursor(ctx context.Context, name string, value uint64) error {
	_, err := s.exec(ctx, nil, `INSERT INTO cursors (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = CASE WHEN cursors.value > excluded.value THEN cursors.value ELSE excluded.value END`,
		name, int64(value))
	if err != nil {
		return fmt.Errorf("save cursor %s: %w", name, err)
	}
	return nil
}
