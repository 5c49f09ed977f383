// Package storetest opens real databases for tests: SQLite in a temp dir
// always, and Postgres whenever TIMMY_TEST_DATABASE_URL is set (CI sets it).
// Each Postgres test gets its own schema, so tests run in parallel without
// seeing each other's rows.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/store"
)

// Engines returns the engines to test on: SQLite, plus Postgres when
// TIMMY_TEST_DATABASE_URL is set. Without it, it says loudly that the
// Postgres half is skipped, and under CI it fails instead.
func Engines(t testing.TB) []store.Engine {
	if os.Getenv("TIMMY_TEST_DATABASE_URL") != "" {
		return []store.Engine{store.SQLite, store.Postgres}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set but TIMMY_TEST_DATABASE_URL is not: the Postgres tests would not run")
	}
	warnOnce.Do(func() {
		fmt.Fprintln(os.Stderr, "*** SKIPPING POSTGRES: set TIMMY_TEST_DATABASE_URL=postgres://... to run every store test on Postgres too (CI does) ***")
	})
	return []store.Engine{store.SQLite}
}

// Open returns a migrated store on engine, closed when the test ends.
func Open(t testing.TB, engine store.Engine) *store.DB {
	t.Helper()
	db, _ := OpenWithDSN(t, engine)
	return db
}

// OpenWithDSN is Open that also returns what another process needs to open
// the same database: a SQLite file path or a Postgres URL.
func OpenWithDSN(t testing.TB, engine store.Engine) (*store.DB, string) {
	t.Helper()
	var (
		db  *store.DB
		dsn string
		err error
	)
	switch engine {
	case store.SQLite:
		dsn = filepath.Join(t.TempDir(), "timmy.db")
		db, err = store.OpenSQLite(dsn)
	case store.Postgres:
		dsn = freshSchema(t)
		db, err = store.OpenPostgres(dsn)
	default:
		t.Fatalf("unknown engine %q", engine)
	}
	if err != nil {
		t.Fatalf("open %s: %v", engine, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", engine, err)
	}
	return db, dsn
}

// Reopen opens a second handle on the database dsn names, as another
// replica would.
func Reopen(t testing.TB, engine store.Engine, dsn string) *store.DB {
	t.Helper()
	var (
		db  *store.DB
		err error
	)
	if engine == store.SQLite {
		db, err = store.OpenSQLite(dsn)
	} else {
		db, err = store.OpenPostgres(dsn)
	}
	if err != nil {
		t.Fatalf("reopen %s: %v", engine, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// freshSchema creates a schema for this test and returns a URL whose
// search_path points at it.
func freshSchema(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TIMMY_TEST_DATABASE_URL")
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", base); err == nil {
			_, _ = db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
			_ = db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse TIMMY_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

var warnOnce sync.Once

// WaitState polls the database, never the HTTP API, until the job reaches
// want, so a test can prove that jobs advance without client polling.
func WaitState(t testing.TB, db *store.DB, id string, want timmy.JobState, within time.Duration) *timmy.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		job, err := db.GetJob(context.Background(), id)
		if err != nil {
			t.Fatalf("get job %s: %v", id, err)
		}
		if job.State == want {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never reached %s within %s; it is %s", id, want, within, job.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Transitions counts the recorded transitions of a job into state to, which
// is how tests prove a state change happened exactly once.
func Transitions(t testing.TB, db *store.DB, id string, to timmy.JobState) int {
	t.Helper()
	events, err := db.JobEvents(context.Background(), id)
	if err != nil {
		t.Fatalf("job events: %v", err)
	}
	n := 0
	for _, e := range events {
		if e.To == to {
			n++
		}
	}
	return n
}
