// Package server is Timmy's HTTP layer: it implements the interface
// generated from api/openapi.yaml, adds the middleware every request gets
// (body limit, client IP, logging, panic recovery), and serves the spec and
// the Prometheus metrics. Handlers only translate; the services decide.
package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/api"
	"github.com/timmyhq/timmy/demo"
	"github.com/timmyhq/timmy/internal/metrics"
	"github.com/timmyhq/timmy/jobs"
)

// MaxBodyBytes bounds every request body; larger bodies get 413.
const MaxBodyBytes = 64 << 10

// DevPayer pays stub invoices for the development route. Only the stub
// Lightning backend implements it.
type DevPayer interface {
	Pay(ctx context.Context, hash timmy.PaymentHash) (timmy.InvoiceStatus, error)
}

// Pinger checks the database for the health endpoint.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config is what the server needs to know about its environment.
type Config struct {
	// DevRoutes mounts the development-only stub payment route. It is
	// false in production.
	DevRoutes bool
	// TrustedProxies are the networks whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Names of the backends in use, for /api/healthz.
	LightningName, AgentName, DatabaseName string
}

// Server serves the API.
type Server struct {
	cfg      Config
	jobs     *jobs.Service
	demo     *demo.Service
	devPayer DevPayer
	db       Pinger
	log      *slog.Logger
	metrics  *metrics.Metrics
	errs     errorWriter
}

var _ api.StrictServerInterface = (*Server)(nil)

// New builds the server. devPayer may be nil; the dev route then answers 404
// even outside production.
func New(cfg Config, jobSvc *jobs.Service, demoSvc *demo.Service, devPayer DevPayer, db Pinger, log *slog.Logger, m *metrics.Metrics) *Server {
	if !cfg.DevRoutes {
		devPayer = nil
	}
	return &Server{cfg: cfg, jobs: jobSvc, demo: demoSvc, devPayer: devPayer, db: db, log: log, metrics: m, errs: errorWriter{log: log}}
}

// Handler returns the complete HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errs.write(w, r, timmy.Errorf(timmy.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
	})
	if s.metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	}
	strict := api.NewStrictHandlerWithOptions(s, []api.StrictMiddlewareFunc{s.withClientIP}, api.StrictHTTPServerOptions{
		RequestErrorHandlerFunc:  s.errs.requestError,
		ResponseErrorHandlerFunc: s.errs.write,
	})
	api.HandlerWithOptions(strict, api.StdHTTPServerOptions{
		BaseRouter:       mux,
		ErrorHandlerFunc: s.errs.requestError,
	})
	var h http.Handler = mux
	if !s.cfg.DevRoutes {
		h = s.withoutDevRoutes(h)
	}
	return s.recoverPanics(s.logRequests(limitBody(h)))
}

// withoutDevRoutes makes the development routes not exist in production:
// they answer 404 exactly like any unknown path.
func (s *Server) withoutDevRoutes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/dev/") {
			s.errs.write(w, r, timmy.Errorf(timmy.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "status", rec.status, "took", time.Since(start))
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "panic", v, "path", r.URL.Path)
				s.errs.write(w, r, timmy.Errorf(timmy.EINTERNAL, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type clientIPKey struct{}

// withClientIP puts the caller's IP in the context for the demo's limit.
func (s *Server) withClientIP(f api.StrictHandlerFunc, _ string) api.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		return f(context.WithValue(ctx, clientIPKey{}, ClientIP(r, s.cfg.TrustedProxies)), w, r, req)
	}
}

// ClientIP is the address of the client that made r. X-Forwarded-For is
// honoured only when the direct peer is a trusted proxy, and then the
// rightmost address that is not itself a trusted proxy is the client: the
// entries to its left were written by the client and can be forged.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		addr, err := parseHop(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = addr.Unmap()
		if !isTrusted(addr, trusted) {
			return addr.String()
		}
	}
	return peer.String()
}

// parseHop reads one X-Forwarded-For entry, which some proxies write with a
// port ("203.0.113.5:4711", "[2001:db8::1]:4711").
func parseHop(s string) (netip.Addr, error) {
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr, nil
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr(), err
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// GetHealth reports the backends in use once the database answers.
func (s *Server) GetHealth(ctx context.Context, _ api.GetHealthRequestObject) (api.GetHealthResponseObject, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return nil, &timmy.Error{Code: timmy.EUNAVAILABLE, Message: "database unavailable"}
	}
	return api.GetHealth200JSONResponse{Status: api.Ok, Lightning: s.cfg.LightningName, Agent: s.cfg.AgentName, Database: s.cfg.DatabaseName}, nil
}

// GetOpenAPI serves the contract itself.
func (s *Server) GetOpenAPI(context.Context, api.GetOpenAPIRequestObject) (api.GetOpenAPIResponseObject, error) {
	return api.GetOpenAPI200ApplicationyamlResponse{Body: bytes.NewReader(api.Spec), ContentLength: int64(len(api.Spec))}, nil
}

// CreateJob creates a job and returns its eval invoice.
func (s *Server) CreateJob(ctx context.Context, req api.CreateJobRequestObject) (api.CreateJobResponseObject, error) {
	if req.Body == nil {
		return nil, timmy.Errorf(timmy.EINVALID, "body must be JSON like {\"request\": \"...\"}")
	}
	job, err := s.jobs.CreateJob(ctx, req.Body.Request)
	if err != nil {
		return nil, err
	}
	return api.CreateJob201JSONResponse{JobId: job.ID, EvalInvoice: toAPIInvoice(job.EvalInvoice)}, nil
}

// GetJob reads a job.
func (s *Server) GetJob(ctx context.Context, req api.GetJobRequestObject) (api.GetJobResponseObject, error) {
	job, err := s.jobs.GetJob(ctx, req.Id.String())
	if err != nil {
		return nil, err
	}
	return api.GetJob200JSONResponse(toAPIJob(job)), nil
}

// ClaimRefund pays a job's owed refund to the buyer's invoice.
func (s *Server) ClaimRefund(ctx context.Context, req api.ClaimRefundRequestObject) (api.ClaimRefundResponseObject, error) {
	if req.Body == nil || strings.TrimSpace(req.Body.PaymentRequest) == "" {
		return nil, timmy.Errorf(timmy.EINVALID, "body must be JSON like {\"paymentRequest\": \"lnbc...\"}")
	}
	refund, err := s.jobs.ClaimRefund(ctx, req.Id.String(), strings.TrimSpace(req.Body.PaymentRequest))
	if err != nil {
		return nil, err
	}
	return api.ClaimRefund200JSONResponse(toAPIRefund(refund)), nil
}

// RunDemo runs free, rate-limited work.
func (s *Server) RunDemo(ctx context.Context, req api.RunDemoRequestObject) (api.RunDemoResponseObject, error) {
	client, _ := ctx.Value(clientIPKey{}).(string)
	res, err := s.demo.Run(ctx, client, req.Params.Request)
	if err != nil {
		return nil, err
	}
	return api.RunDemo200JSONResponse{Result: res.Text, Model: nonEmpty(res.Usage.Model)}, nil
}

// DevPayInvoice pays a stub invoice.
func (s *Server) DevPayInvoice(ctx context.Context, req api.DevPayInvoiceRequestObject) (api.DevPayInvoiceResponseObject, error) {
	if s.devPayer == nil {
		return nil, timmy.Errorf(timmy.ENOTFOUND, "the stub payment route exists only with the stub Lightning backend outside production")
	}
	hash, err := timmy.ParsePaymentHash(req.PaymentHash)
	if err != nil {
		return nil, err
	}
	// The stub pushes the payment to the settlement watcher itself.
	status, err := s.devPayer.Pay(ctx, hash)
	if err != nil {
		return nil, err
	}
	return api.DevPayInvoice200JSONResponse{PaymentHash: hash.String(), Status: api.InvoiceStatus(status)}, nil
}
