package timmy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
)

func TestUSDToSatsRoundsUpWithAMinimumOfOne(t *testing.T) {
	t.Parallel()
	cases := []struct {
		usd, price float64
		want       timmy.Sats
	}{
		{1, 100000, 1000},
		{0.0000001, 100000, 1},   // a fraction of a sat is still 1
		{0.0100001, 100000, 11},  // 10.0001 sats rounds up
		{0.0225, 50000, 45},      // exact
		{0, 100000, 1},           // never a zero invoice
		{5, 0, 1},                // a nonsense price never divides by zero
		{123.456, 61000, 202387}, // ceil(202386.88...)
	}
	for _, c := range cases {
		require.Equal(t, c.want, timmy.USDToSats(c.usd, c.price), "%v USD at %v", c.usd, c.price)
	}
}

func TestParsePaymentHash(t *testing.T) {
	t.Parallel()
	h, err := timmy.ParsePaymentHash(strings.Repeat("0a", 32))
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("0a", 32), h.String())
	for _, bad := range []string{"", "xyz", strings.Repeat("0a", 31), strings.Repeat("0a", 33), strings.Repeat("zz", 32)} {
		_, err := timmy.ParsePaymentHash(bad)
		require.Equal(t, timmy.EINVALID, timmy.ErrorCode(err), "%q", bad)
	}
}

func TestErrorCodeAndMessage(t *testing.T) {
	t.Parallel()
	coded := timmy.Errorf(timmy.ENOTFOUND, "job not found")
	require.Equal(t, timmy.ENOTFOUND, timmy.ErrorCode(coded))
	require.Equal(t, "job not found", timmy.ErrorMessage(coded))
	plain := errorString("database is on fire at 10.0.0.3")
	require.Equal(t, timmy.EINTERNAL, timmy.ErrorCode(plain))
	require.Equal(t, "internal error", timmy.ErrorMessage(plain), "internal details never reach the caller")
	require.Equal(t, "", timmy.ErrorCode(nil))
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestDecideInvoice pins down who gets the money in every state.
func TestDecideInvoice(t *testing.T) {
	t.Parallel()
	evaluated := time.Now()
	job := func(s timmy.JobState, evaluatedAt *time.Time) *timmy.Job {
		return &timmy.Job{State: s, EvaluatedAt: evaluatedAt}
	}
	cases := []struct {
		name string
		job  *timmy.Job
		kind timmy.InvoiceKind
		want timmy.InvoiceAction
	}{
		{"eval paid, evaluation running", job(timmy.JobEvaluating, nil), timmy.InvoiceEval, timmy.ActionWait},
		{"eval paid, waiting for the transition", job(timmy.JobAwaitingEvalPayment, nil), timmy.InvoiceEval, timmy.ActionWait},
		{"rejected: an evaluation was made", job(timmy.JobRejected, &evaluated), timmy.InvoiceEval, timmy.ActionKeep},
		{"quoted: an evaluation was made", job(timmy.JobAwaitingWorkPayment, &evaluated), timmy.InvoiceEval, timmy.ActionKeep},
		{"complete", job(timmy.JobComplete, &evaluated), timmy.InvoiceEval, timmy.ActionKeep},
		{"evaluation itself failed", job(timmy.JobFailed, nil), timmy.InvoiceEval, timmy.ActionReturn},
		{"work failed after evaluation", job(timmy.JobFailed, &evaluated), timmy.InvoiceEval, timmy.ActionKeep},
		{"paid after the job expired", job(timmy.JobExpired, nil), timmy.InvoiceEval, timmy.ActionReturn},
		{"work paid, waiting", job(timmy.JobAwaitingWorkPayment, &evaluated), timmy.InvoiceWork, timmy.ActionWait},
		{"work running", job(timmy.JobExecuting, &evaluated), timmy.InvoiceWork, timmy.ActionWait},
		{"work delivered", job(timmy.JobComplete, &evaluated), timmy.InvoiceWork, timmy.ActionKeep},
		{"work failed", job(timmy.JobFailed, &evaluated), timmy.InvoiceWork, timmy.ActionReturn},
		{"work paid after expiry", job(timmy.JobExpired, &evaluated), timmy.InvoiceWork, timmy.ActionReturn},
	}
	for _, c := range cases {
		require.Equal(t, c.want, timmy.DecideInvoice(c.job, c.kind), c.name)
	}
}

func TestJobStates(t *testing.T) {
	t.Parallel()
	final := map[timmy.JobState]bool{timmy.JobComplete: true, timmy.JobRejected: true, timmy.JobFailed: true, timmy.JobExpired: true}
	for _, s := range timmy.AllJobStates {
		require.Equal(t, final[s], s.Final(), s)
		require.Equal(t, s == timmy.JobEvaluating || s == timmy.JobExecuting, s.Working(), s)
	}
}
