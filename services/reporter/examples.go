package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
)

const examplesQuery = "SELECT envelope_id, ts, route, method, path, query, diff_paths, diff_kinds," +
	" request_headers, request_body, primary_status, primary_headers, primary_body," +
	" shadow_status, shadow_headers, shadow_body, shadow_error" +
	" FROM %s.examples FINAL WHERE launch_id = @launch AND fingerprint = @fingerprint ORDER BY slot LIMIT %d"

// QueryExamples reads a diff class's stored examples; none for a class
// without any (or an unknown fingerprint).
func QueryExamples(ctx context.Context, conn driver.Conn, database, launchID, fingerprint string) ([]api.Example, error) {
	ex, err := analytics.ScanAll(ctx, conn, "examples", fmt.Sprintf(examplesQuery, database, maxExamples),
		func(rows driver.Rows) (e api.Example, err error) {
			var paths, kinds []string
			var reqH, primH, shH string
			err = rows.Scan(&e.EnvelopeID, &e.TS, &e.Route, &e.Method, &e.Path, &e.Query, &paths, &kinds,
				&reqH, &e.Request.Body, &e.Primary.Status, &primH, &e.Primary.Body,
				&e.Shadow.Status, &shH, &e.Shadow.Body, &e.Shadow.Error)
			e.TS = e.TS.UTC()
			e.Diffs = make([]api.PathKind, 0, len(paths))
			for i, p := range paths {
				if i < len(kinds) {
					e.Diffs = append(e.Diffs, api.PathKind{Path: p, Kind: kinds[i]})
				}
			}
			e.Request.Headers, e.Primary.Headers, e.Shadow.Headers = headersJSON(reqH), headersJSON(primH), headersJSON(shH)
			return e, err
		}, clickhouse.Named("launch", launchID), clickhouse.Named("fingerprint", fingerprint))
	if ex == nil {
		ex = []api.Example{}
	}
	return ex, err
}

// headersJSON passes a stored headers object through; anything else (an
// empty or damaged column) would break the whole answer's JSON, so it
// becomes a JSON string, or {} when empty.
func headersJSON(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage("{}")
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

func (s *Service) getExamples(w http.ResponseWriter, r *http.Request) error {
	l, err := s.pathLaunch(r)
	if err != nil {
		return err
	}
	conn, err := s.clickhouse()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	fp := r.PathValue("fingerprint")
	ex, err := QueryExamples(ctx, conn, s.cfg.ClickHouseDatabase, l.ID, fp)
	if err != nil {
		return fmt.Errorf("read examples of launch %s class %s: %w", l.ID, fp, err)
	}
	writeJSON(w, http.StatusOK, api.ExampleList{LaunchID: l.ID, Fingerprint: fp, Examples: ex})
	return nil
}
