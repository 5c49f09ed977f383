// Package metrics defines Timmy's Prometheus metrics: jobs by state, read
// from the database at scrape time so every replica reports the same truth,
// and the latency of every call to a backend (Lightning, agent, pricing).
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/timmyhq/timmy"
)

// Metrics holds the registry and the instruments the service records into.
type Metrics struct {
	Registry       *prometheus.Registry
	backendLatency *prometheus.HistogramVec
}

// JobCounter counts jobs by state; the store implements it.
type JobCounter interface {
	CountJobsByState(ctx context.Context) (map[timmy.JobState]int64, error)
}

// New builds a registry with Go runtime metrics, backend latency and, when
// jobs is set, a jobs-by-state gauge.
func New(jobs JobCounter) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		backendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "timmy_backend_call_duration_seconds",
			Help:    "Latency of calls to Lightning, agent and pricing backends.",
			Buckets: []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"backend", "op", "outcome"}),
	}
	reg.MustRegister(m.backendLatency)
	if jobs != nil {
		reg.MustRegister(&jobsCollector{jobs: jobs, desc: prometheus.NewDesc(
			"timmy_jobs", "Jobs by state, as stored in the database.", []string{"state"}, nil)})
	}
	return m
}

// Observe records one backend call's latency and outcome.
func (m *Metrics) Observe(backend, op string, start time.Time, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.backendLatency.WithLabelValues(backend, op, outcome).Observe(time.Since(start).Seconds())
}

type jobsCollector struct {
	jobs JobCounter
	desc *prometheus.Desc
}

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.jobs.CountJobsByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range timmy.AllJobStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
