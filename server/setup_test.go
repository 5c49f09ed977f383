package server_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/agent/stub"
	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/demo"
	"github.com/timmyhq/timmy/internal/apitest"
	"github.com/timmyhq/timmy/internal/metrics"
	"github.com/timmyhq/timmy/jobs"
	stubln "github.com/timmyhq/timmy/lightning/stub"
	"github.com/timmyhq/timmy/pricing"
	"github.com/timmyhq/timmy/server"
	"github.com/timmyhq/timmy/store"
	"github.com/timmyhq/timmy/store/storetest"
)

// options tunes one test instance of the service.
type options struct {
	engine         store.Engine
	production     bool
	agent          timmy.Agent
	lightning      timmy.Lightning // default: the stub on this instance's store
	demoLimit      int64
	demoMaxTokens  int64
	trustedProxies []netip.Prefix
	lease          time.Duration
	// shareWith runs this instance on another instance's database, as a
	// second replica.
	shareWith *instance
}

// instance is one running copy of the service and what a test needs to
// drive and inspect it.
type instance struct {
	URL    string
	client *api.ClientWithResponses
	db     *store.DB
	dsn    string
	engine store.Engine
	stub   *stubln.Lightning
	jobs   *jobs.Service
	agent  *countingAgent
	keyDir string
}

// countingAgent counts calls to the agent it wraps, so tests can prove the
// agent ran exactly once. The count may be shared between replicas.
type countingAgent struct {
	timmy.Agent
	executes *atomic.Int64
}

func (a *countingAgent) Execute(ctx context.Context, req string, o timmy.ExecuteOptions) (timmy.WorkResult, error) {
	a.executes.Add(1)
	return a.Agent.Execute(ctx, req, o)
}

func setup(t testing.TB, o options) *instance {
	t.Helper()
	in := &instance{engine: o.engine}
	if o.shareWith != nil {
		in.engine = o.shareWith.engine
		in.dsn = o.shareWith.dsn
		in.db = storetest.Reopen(t, in.engine, in.dsn)
		in.keyDir = o.shareWith.keyDir
	} else {
		in.db, in.dsn = storetest.OpenWithDSN(t, o.engine)
		in.keyDir = t.TempDir()
	}
	ln := o.lightning
	if ln == nil {
		var err error
		in.stub, err = stubln.New(in.db, filepath.Join(in.keyDir, "stub-node.key"))
		require.NoError(t, err)
		ln = in.stub
	}
	agent := o.agent
	if agent == nil {
		agent = stub.New(stub.Config{Delay: 50 * time.Millisecond})
	}
	in.agent = &countingAgent{Agent: agent, executes: new(atomic.Int64)}
	if o.shareWith != nil {
		in.agent.executes = o.shareWith.agent.executes
	}
	pricer, err := pricing.New(pricing.DefaultConfig(pricing.FixedPrice{USD: 100000}))
	require.NoError(t, err)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := metrics.New(in.db)
	lease := o.lease
	if lease == 0 {
		lease = 5 * time.Second
	}
	in.jobs = jobs.New(in.db, ln, in.agent, pricer, jobs.Config{
		ReconcileInterval: 200 * time.Millisecond, ClaimInterval: 50 * time.Millisecond, LeaseDuration: lease,
	}, log, m)
	demoSvc := demo.New(in.db, in.agent, in.jobs.ValidateRequest, demo.Config{Limit: o.demoLimit, MaxOutputTokens: o.demoMaxTokens}, m, "stub")
	var devPayer server.DevPayer
	if in.stub != nil {
		devPayer = in.stub
	}
	srv := server.New(server.Config{
		DevRoutes: !o.production, TrustedProxies: o.trustedProxies,
		LightningName: "stub", AgentName: "stub", DatabaseName: string(in.engine),
	}, in.jobs, demoSvc, devPayer, in.db, log, m)
	hs := httptest.NewServer(srv.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); in.jobs.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; hs.Close() })

	in.URL = hs.URL
	in.client, err = api.NewClientWithResponses(hs.URL, api.WithHTTPClient(apitest.Client(t)))
	require.NoError(t, err)
	return in
}

// waitState waits until the job reaches want, reading the database and
// never the HTTP API, so tests prove jobs advance without client polling.
func (in *instance) waitState(t *testing.T, id string, want timmy.JobState) *timmy.Job {
	t.Helper()
	return storetest.WaitState(t, in.db, id, want, 15*time.Second)
}

func (in *instance) createJob(t testing.TB, request string) *api.CreatedJob {
	t.Helper()
	resp, err := in.client.CreateJobWithResponse(context.Background(), api.CreateJobJSONRequestBody{Request: request})
	require.NoError(t, err)
	require.Equal(t, 201, resp.StatusCode(), string(resp.Body))
	return resp.JSON201
}

func (in *instance) pay(t testing.TB, hash string) {
	t.Helper()
	resp, err := in.client.DevPayInvoiceWithResponse(context.Background(), hash)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
}

func (in *instance) getJob(t testing.TB, id string) *api.Job {
	t.Helper()
	resp, err := in.client.GetJobWithResponse(context.Background(), mustUUID(t, id))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode(), string(resp.Body))
	return resp.JSON200
}
