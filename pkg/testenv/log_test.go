package testenv

import (
	"log/slog"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what is logged, so the test can
// check what Logger forwards and what it drops.
type recorder struct {
	testing.TB
	lines    []string
	cleanups []func()
}

func (r *recorder) Log(args ...any)  { r.lines = append(r.lines, args[0].(string)) }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func TestLoggerForwardsUntilTheTestEnds(t *testing.T) {
	r := &recorder{TB: t}
	log := Logger(r, slog.LevelWarn)
	log.Info("below the level")
	log.Warn("kept", "k", "v")
	for _, f := range r.cleanups {
		f()
	}
	log.Warn("after the end")
	if len(r.lines) != 1 || !strings.Contains(r.lines[0], "msg=kept k=v") || strings.HasSuffix(r.lines[0], "\n") {
		t.Fatalf("logged %q, want one line with msg=kept k=v and no trailing newline", r.lines)
	}
}
