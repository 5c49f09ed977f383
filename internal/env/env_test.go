package env_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy/internal/env"
)

func TestDefaultsWhenUnsetOrBlank(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{"BLANK": "  "})
	require.Equal(t, "def", e.String("BLANK", "def"))
	require.Equal(t, int64(7), e.Int("MISSING", 7))
	require.Equal(t, 1.5, e.Float("MISSING", 1.5))
	require.True(t, e.Bool("MISSING", true))
	require.Equal(t, time.Minute, e.Duration("MISSING", time.Minute))
	require.Equal(t, []string{"a"}, e.List("MISSING", []string{"a"}))
	require.Equal(t, "", e.Secret("MISSING"))
	require.False(t, e.Set("BLANK"))
	require.NoError(t, e.Err())
}

func TestParsedValues(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{"N": "42", "F": "0.25", "B": "true", "D": "90s", "L": " a, ,b ,c"})
	require.Equal(t, int64(42), e.Int("N", 0))
	require.Equal(t, 0.25, e.Float("F", 0))
	require.True(t, e.Bool("B", false))
	require.Equal(t, 90*time.Second, e.Duration("D", 0))
	require.Equal(t, []string{"a", "b", "c"}, e.List("L", nil))
	require.NoError(t, e.Err())
}

func TestAllErrorsAreCollected(t *testing.T) {
	t.Parallel()
	e := env.FromMap(map[string]string{"N": "x", "F": "y", "B": "maybe", "D": "5"})
	require.Equal(t, int64(1), e.Int("N", 1), "a bad value falls back to the default")
	e.Float("F", 0)
	e.Bool("B", false)
	e.Duration("D", 0)
	e.Fail("CUSTOM: %s", "contradiction")
	err := e.Err()
	for _, want := range []string{`N: "x" is not an integer`, `F: "y" is not a number`, `B: "maybe" is not a boolean`, `D: "5" is not a duration`, "CUSTOM: contradiction"} {
		require.ErrorContains(t, err, want)
	}
}

func TestSecretFromFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte("s3cret\n"), 0o600))
	e := env.FromMap(map[string]string{"API_KEY_FILE": path, "DIRECT": "inline", "DIRECT_FILE": path})
	require.Equal(t, "s3cret", e.Secret("API_KEY"), "read from NAME_FILE, trimmed")
	require.Equal(t, "inline", e.Secret("DIRECT"), "NAME wins over NAME_FILE")
	require.True(t, e.Set("API_KEY"))

	bad := env.FromMap(map[string]string{"K_FILE": filepath.Join(t.TempDir(), "missing")})
	require.Equal(t, "", bad.Secret("K"))
	require.ErrorContains(t, bad.Err(), "K_FILE")
}
