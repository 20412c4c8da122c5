package reporter_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/live"
	"github.com/darklaunch/darklaunch/pkg/stream"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// The report's accounting sums the counts every process incarnation wrote
// (two taps, a runner, a comparator), counts the launch's envelopes in
// the streams as in flight (a batch for its items), and computes
// unaccounted; the dashboard shows it, a loss highlighted.
func TestReportAccounting(t *testing.T) {
	e := startEnv(t, envOptions{})
	l := e.create("accounted", 100)
	other := e.create("other", 100)
	ctx := testenv.Context(t)
	_, js := testenv.Connect(t, e.js.URL())

	// Before anything counted: zeros, not an error.
	var r api.Report
	e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &r)
	if a := r.Accounting; a == nil || a.Error != "" || a.Sampled != 0 || a.Unaccounted != 0 || a.Dropped == nil || a.Skipped == nil {
		t.Fatalf("nothing counted: %+v", a)
	}

	tapA, tapB := live.NewLedger(live.RoleTap, "tap-a"), live.NewLedger(live.RoleTap, "tap-b")
	runner, comparator := live.NewLedger(live.RoleRunner, "runner-1"), live.NewLedger(live.RoleComparator, "comparator-1")
	tapA.Sampled(l.ID, 10)
	tapA.Published(l.ID, 8)
	tapA.Dropped(l.ID, "queue_full", 2)
	tapB.Sampled(l.ID, 5)
	tapB.Published(l.ID, 5)
	tapB.Sampled(other.ID, 100) // another launch's
	runner.Replayed(l.ID, 6)
	runner.Skipped(l.ID, "rate_limited", 3)
	runner.DeadLettered(l.ID, "unsealable", 1)
	comparator.DeadLettered(l.ID, "malformed", 1)
	for _, ledger := range []*live.Ledger{tapA, tapB, runner, comparator} {
		if _, err := ledger.Flush(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	// In flight: a batch of two envelopes and one pair.
	if err := stream.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	batch, err := envelope.AppendEnvelopeBatch(nil, []*envelope.Envelope{{ID: "e1", LaunchID: l.ID}, {ID: "e2", LaunchID: l.ID}})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(stream.EnvelopeSubject(l.ID))
	m.Data = batch
	m.Header.Set(envelope.BatchHeader, envelope.BatchVersion)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, stream.PairSubject(l.ID), []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}

	want := api.Accounting{Sampled: 15, Published: 13, Dropped: map[string]uint64{"queue_full": 2}, Replayed: 6,
		Skipped: map[string]uint64{"rate_limited": 3}, DeadLettered: 2, DeadLetterReasons: map[string]uint64{"unsealable": 1, "malformed": 1},
		InFlight: 3, Processes: api.AccountingProcesses{Taps: 2, Runners: 1, Comparators: 1}}
	want.Balance() // 15 - 0 compared - 2 - 3 - 2 - 3 = 5 unaccounted
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var r api.Report
		e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &r)
		a := r.Accounting
		if a == nil || a.Sampled != want.Sampled || a.Published != want.Published || !maps.Equal(a.Dropped, want.Dropped) ||
			a.Replayed != want.Replayed || !maps.Equal(a.Skipped, want.Skipped) || a.DeadLettered != want.DeadLettered ||
			!maps.Equal(a.DeadLetterReasons, want.DeadLetterReasons) || a.Compared != 0 || a.InFlight != want.InFlight ||
			a.InFlightEstimated || a.Processes != want.Processes || a.Unaccounted != 5 || want.Unaccounted != 5 || a.Error != "" {
			return fmt.Errorf("accounting %+v, want %+v", a, want)
		}
		return nil
	})

	// The dashboard shows it.
	tab := browser(t)
	until := func(what, cond string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var ok bool
			if err := chromedp.Poll(cond, &ok, chromedp.WithPollingTimeout(30*time.Second)).Do(ctx); err != nil {
				return fmt.Errorf("%s (%s): %w", what, cond, err)
			}
			return nil
		})
	}
	var cards, reasons, note string
	if err := chromedp.Run(tab,
		chromedp.Navigate(e.base+"/"),
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", testTokens["read"], chromedp.ByQuery),
		chromedp.Click(`#loginform button[type=submit]`, chromedp.ByQuery),
		until("the launches show", `document.querySelector("#launches tbody").textContent.includes("accounted")`),
		chromedp.Evaluate(`[...document.querySelectorAll("#launches tbody tr")].find((tr) => tr.textContent.includes("accounted")).click()`, nil),
		until("the accounting shows", `document.querySelector("#accounting").textContent.includes("unaccounted")`),
		chromedp.Text("#accounting", &cards, chromedp.ByQuery),
		chromedp.Text("#acctreasons", &reasons, chromedp.ByQuery),
		chromedp.Text("#acctnote", &note, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"15sampled", "13published", "6replayed", "0compared", "2dropped", "3skipped", "2dead-lettered", "3in flight", "5unaccounted"} {
		if !strings.Contains(strings.ReplaceAll(cards, "\n", ""), want) {
			t.Errorf("accounting cards %q lack %q", cards, want)
		}
	}
	if reasons != "dropped: queue_full 2 · skipped: rate_limited 3 · dead-lettered: malformed 1, unsealable 1" {
		t.Errorf("reasons %q", reasons)
	}
	if !strings.Contains(strings.ToLower(note), "2 tap(s), 1 runner(s), 1 comparator(s)") {
		t.Errorf("note %q", note)
	}
	var lost bool
	if err := chromedp.Run(tab, chromedp.Evaluate(`[...document.querySelectorAll("#accounting .card")].pop().classList.contains("lost")`, &lost)); err != nil || !lost {
		t.Errorf("the unaccounted card is not highlighted: %v", err)
	}

	// NATS away: the report still answers, the accounting says why it is
	// incomplete and claims no loss.
	e.js.Stop()
	e.ok(http.StatusOK, "GET", "/v1/launches/"+l.ID+"/report", nil, &r)
	if a := r.Accounting; a == nil || a.Error == "" || a.Unaccounted != 0 {
		t.Errorf("with NATS away: %+v", a)
	}
}
