package reporter

import (
	"github.com/darklaunch/darklaunch/pkg/admin"
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
	authFailures        *prometheus.CounterVec
	compactions         *prometheus.CounterVec
	sealedBuckets       *prometheus.CounterVec
	compactDuration     prometheus.Histogram
	droppedPartitions   *prometheus.CounterVec
	reportAge           *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	d := admin.Metrics{Reg: reg, Prefix: "darklaunch_reporter_"}
	return &metrics{
		requests: d.CounterVec("http_requests_total", "API requests by route pattern, method and status code.",
			"route", "method", "code"),
		requestDuration: d.HistogramVec("http_request_duration_seconds", "API request duration by route pattern.",
			prometheus.ExponentialBuckets(0.001, 2.5, 10), "route"),
		reports: d.CounterVec("reports_total",
			"Reports served, by cache result (hit: from Redis; miss: computed in ClickHouse, possibly shared with concurrent polls).", "cache"),
		reportQueries: d.Counter("report_queries_total",
			"Report computations run in ClickHouse (concurrent polls of one launch share one)."),
		reportQueryErrors: d.Counter("report_query_errors_total", "Report computations that failed in ClickHouse."),
		reportQueryDuration: d.Histogram("report_query_duration_seconds", "Duration of one report computation in ClickHouse.",
			prometheus.ExponentialBuckets(0.002, 2.5, 10)),
		cacheErrors: d.CounterVec("cache_errors_total",
			"Redis report cache failures by operation (get, set, decode); the report is then computed in ClickHouse.", "op"),
		actions: d.CounterVec("launch_changes_total",
			"Successful launch changes through the API by action (create, patch, pause, resume, promote, rollback).", "action"),
		verdicts: d.CounterVec("verdicts_total",
			"Verdicts computed (API polls and controller ticks), by verdict (pass, fail, inconclusive).", "verdict"),
		verdictQueries: d.Counter("verdict_queries_total",
			"Verdict window computations run in ClickHouse (cache hits and collapsed concurrent polls do not count)."),
		decisions: d.CounterVec("controller_decisions_total",
			"Controller decisions on the launches this reporter drives, by decision (stay, step_advanced, promoted, live_step, rolled_back, gate_failed, stale: a manual change came first).", "decision"),
		leases: d.Gauge("controller_leases", "Launches this reporter holds the lease of (drives) now."),
		leaseErrors: d.Counter("controller_lease_errors_total",
			"Lease operations on the NATS KV bucket darklaunch_leases that failed (not counting a lease held by another reporter)."),
		auditWritten: d.Counter("audit_entries_total", "Audit entries written to ClickHouse."),
		auditFailures: d.CounterVec("audit_failures_total",
			"Audit entries lost, by reason (insert: ClickHouse failed or is not connected; queue_full; shutdown). The launch change itself was made.", "reason"),
		authFailures: d.CounterVec("auth_failures_total",
			"API requests refused by authentication, by reason (token: none or not valid, 401; scope: too small, 403).", "reason"),
		compactions: d.CounterVec("compactions_total",
			"Compactions of one launch (sealing its finished buckets into the aggregate tables), by result (ok, error).", "result"),
		sealedBuckets: d.CounterVec("sealed_buckets_total",
			"One-minute buckets sealed into the aggregate tables, by kind (sealed: the first time; resealed: rows arrived or collapsed since).", "kind"),
		compactDuration: d.Histogram("compaction_duration_seconds", "Duration of one launch's compaction.",
			prometheus.ExponentialBuckets(0.005, 2.5, 10)),
		droppedPartitions: d.CounterVec("dropped_partitions_total",
			"Month partitions dropped by retention (REPORTER_RETENTION, REPORTER_AGGREGATE_RETENTION), by table.", "table"),
		reportAge: d.HistogramVec("served_age_seconds",
			"Age of the numbers served (now - generated_at) by endpoint (report, verdict).",
			prometheus.ExponentialBuckets(0.05, 2.5, 10), "endpoint"),
	}
}
