package reporter

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/pkg/analytics"
	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

const (
	// auditQueueSize bounds the entries waiting for ClickHouse; changes are
	// rare, so a full queue means ClickHouse has been gone for a while.
	auditQueueSize = 1024
	// auditBatch is the most entries one insert carries.
	auditBatch = 100
	// auditTimeout bounds one insert.
	auditTimeout = 5 * time.Second
	// maxReason keeps one audit row and one log line readable whatever a
	// caller sends.
	maxReason = 500
)

// newAuditEntry describes a change of l (as stored after the change) made
// by actor.
func newAuditEntry(l *launch.Launch, action string, from launch.Status, actor, reason string, details any) api.AuditEntry {
	e := api.AuditEntry{LaunchID: l.ID, TS: l.UpdatedAt, Action: action, FromStatus: string(from), ToStatus: string(l.Status),
		SamplePercent: l.SamplePercent, LivePercent: l.LivePercent, Actor: actor, Reason: clip(reason), Details: "{}"}
	if e.TS.IsZero() {
		e.TS = time.Now().UTC()
	}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			e.Details = string(b)
		}
	}
	return e
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "") + "..."
	}
	return s
}

// audit queues an entry for the audit log. It never blocks: the change it
// records is already made, and losing the record (counted) is better than
// holding up the API or the controller.
func (s *Service) audit(e api.AuditEntry) {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if s.auditClosed {
		s.metrics.auditFailures.WithLabelValues("shutdown").Inc()
		s.log.Warn("audit entry lost: the reporter is shutting down", "launch_id", e.LaunchID, "action", e.Action)
		return
	}
	select {
	case s.auditCh <- e:
	default:
		s.metrics.auditFailures.WithLabelValues("queue_full").Inc()
		s.log.Warn("audit entry lost: queue full (ClickHouse slow or down)", "launch_id", e.LaunchID, "action", e.Action)
	}
}

// closeAudit stops taking entries; writeAudit then drains the queue.
func (s *Service) closeAudit() {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if !s.auditClosed {
		s.auditClosed = true
		close(s.auditCh)
	}
}

// writeAudit inserts queued entries in batches until the queue is closed
// and drained. One attempt per batch: a failure is logged and counted.
func (s *Service) writeAudit() {
	for e := range s.auditCh {
		batch := []api.AuditEntry{e}
	more:
		for len(batch) < auditBatch {
			select {
			case e, ok := <-s.auditCh:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		conn, err := s.clickhouse()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
			err = analytics.InsertAudit(ctx, conn, s.cfg.ClickHouseDatabase, batch)
			cancel()
		}
		if err != nil {
			s.metrics.auditFailures.WithLabelValues("insert").Add(float64(len(batch)))
			s.log.Error("audit entries lost", "entries", len(batch), "launch_id", batch[0].LaunchID, "action", batch[0].Action, "err", err)
			continue
		}
		s.metrics.auditWritten.Add(float64(len(batch)))
	}
}
