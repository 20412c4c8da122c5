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
			Help: "Successful launch changes by action (create, patch, pause, resume, promote, rollback).",
		}, []string{"action"}),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.reports, m.reportQueries, m.reportQueryErrors,
		m.reportQueryDuration, m.cacheErrors, m.actions)
	return m
}
