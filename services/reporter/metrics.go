package reporter

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests            *prometheus.CounterVec
	requestDuration     *prometheus.HistogramVec
	reports             *prometheus.CounterVec
	reportQueries       prometheus.Counter
	reportQueryErrors   prometheus.Counter
	reportQueryDuration prometheus.Histogram
	cacheErrors         *prometheus.CounterVec
	actions             *prometheus.CounterVec
	verdicts            *prometheus.CounterVec
	verdictQueries      prometheus.Counter
	decisions           *prometheus.CounterVec
	leases              prometheus.Gauge
	leaseErrors         prometheus.Counter
	auditWritten        prometheus.Counter
	auditFailures       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_http_requests_total",
			Help: "API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "darklaunch_reporter_http_request_duration_seconds",
			Help:    "API request duration by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}, []string{"route"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_reports_total",
			Help: "Reports served, by cache result (hit: from Redis; miss: computed in ClickHouse, possibly shared with concurrent polls).",
		}, []string{"cache"}),
		reportQueries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "darklaunch_reporter_report_queries_total",
			Help: "Report computations run in ClickHouse (concurrent polls of one launch share one).",
		}),
		reportQueryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "darklaunch_reporter_report_query_errors_total",
			Help: "Report computations that failed in ClickHouse.",
		}),
		reportQueryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "darklaunch_reporter_report_query_duration_seconds",
			Help:    "Duration of one report computation in ClickHouse.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 10),
		}),
		cacheErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_cache_errors_total",
			Help: "Redis report cache failures by operation (get, set, decode); the report is then computed in ClickHouse.",
		}, []string{"op"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_launch_changes_total",
			Help: "Successful launch changes through the API by action (create, patch, pause, resume, promote, rollback).",
		}, []string{"action"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_verdicts_total",
			Help: "Verdicts computed (API polls and controller ticks), by verdict (pass, fail, inconclusive).",
		}, []string{"verdict"}),
		verdictQueries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "darklaunch_reporter_verdict_queries_total",
			Help: "Verdict window computations run in ClickHouse (cache hits and collapsed concurrent polls do not count).",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_controller_decisions_total",
			Help: "Controller decisions on the launches this reporter drives, by decision (stay, step_advanced, promoted, live_step, rolled_back, gate_failed, stale: a manual change came first).",
		}, []string{"decision"}),
		leases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "darklaunch_reporter_controller_leases",
			Help: "Launches this reporter holds the lease of (drives) now.",
		}),
		leaseErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "darklaunch_reporter_controller_lease_errors_total",
			Help: "Lease operations on the NATS KV bucket darklaunch_leases that failed (not counting a lease held by another reporter).",
		}),
		auditWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "darklaunch_reporter_audit_entries_total",
			Help: "Audit entries written to ClickHouse.",
		}),
		auditFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_reporter_audit_failures_total",
			Help: "Audit entries lost, by reason (insert: ClickHouse failed or is not connected; queue_full; shutdown). The launch change itself was made.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.reports, m.reportQueries, m.reportQueryErrors,
		m.reportQueryDuration, m.cacheErrors, m.actions, m.verdicts, m.verdictQueries, m.decisions, m.leases,
		m.leaseErrors, m.auditWritten, m.auditFailures)
	return m
}
