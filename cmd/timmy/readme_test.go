package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy/store"
)

// TestREADMEWalkthrough runs the README's curl walkthrough, exactly as
// written, against a real `timmy serve`, so the docs cannot drift from the
// code.
func TestREADMEWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "jq", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed to run the README walkthrough", tool)
			}
			t.Skipf("*** SKIPPING README WALKTHROUGH: %s is not installed ***", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	section := strings.SplitN(string(readme), "## Walkthrough with curl", 2)
	require.Len(t, section, 2, "README has a walkthrough section")
	parts := strings.SplitN(section[1], "```bash\n", 2)
	require.Len(t, parts, 2)
	script := strings.SplitN(parts[1], "```", 2)[0]

	envs, _ := dbEnv(t, store.SQLite)
	p := startServe(t, envs)
	cmd := exec.Command("bash", "-eo", "pipefail", "-c", script)
	cmd.Env = []string{"TIMMY_URL=" + p.URL, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "walkthrough failed:\n%s", out)
	require.Contains(t, string(out), `"state": "awaiting_work_payment"`)
	require.Contains(t, string(out), `"pricingBreakdown": {`)
	require.Contains(t, string(out), `"state": "complete"`)
	require.Contains(t, string(out), `"totalTokens"`)
	require.Contains(t, string(out), `"error": "Invalid format for parameter id`)
}
