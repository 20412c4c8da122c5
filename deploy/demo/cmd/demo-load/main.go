// Command demo-load is the driver of `make demo`: it creates a launch on the
// reporter, sends a bounded amount of mixed traffic through the mirror,
// checks that every client answer came from the primary, waits until the
// pipeline has compared what it mirrored, and prints the report.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	dlclient "github.com/darklaunch/darklaunch/pkg/client"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

func main() {
	mirror := flag.String("mirror", "http://127.0.0.1:8080", "mirror (the tap) base URL")
	reporter := flag.String("reporter", "http://127.0.0.1:8090", "reporter base URL")
	shadow := flag.String("shadow", "http://127.0.0.1:9102", "the shadow's URL for the launch")
	secondary := flag.String("secondary", "http://127.0.0.1:9103", "the secondary's URL for the launch (a second instance of the primary's version,\nused to tell noise from regressions); empty for none")
	service := flag.String("service", "default", "the mirror's MIRROR_SERVICE")
	percent := flag.Float64("percent", 100, "sample percent of the launch")
	duration := flag.Duration("duration", 15*time.Second, "how long to send traffic")
	workers := flag.Int("concurrency", 8, "concurrent clients")
	rate := flag.Int("rate", 400, "requests per second (0: as fast as the clients go); a moderate rate keeps the\nlatency comparison about the shadow, not about this machine's CPUs being saturated")
	flag.Parse()
	if err := run(*mirror, *reporter, *shadow, *secondary, *service, *percent, *duration, *workers, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "demo-load:", err)
		os.Exit(1)
	}
}

func run(mirror, reporter, shadow, secondary, service string, percent float64, duration time.Duration, workers, rate int) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	// An admin token (it creates a launch): make demo passes the stack's.
	reporterAPI, err := dlclient.New(reporter, dlclient.WithToken(os.Getenv("DARKLAUNCH_TOKEN")))
	if err != nil {
		return err
	}
	ctx0 := context.Background()
	req := api.CreateRequest{
		Name: demoPrefix + time.Now().Format("15:04:05"), Service: service, ShadowURL: shadow,
		SecondaryURL: secondary, SamplePercent: &percent, Methods: []string{"GET"},
	}
	// A rerun supersedes earlier demo launches: left active at 100% they
	// would each mirror every request, multiplying the shadow's load.
	if err := retireDemoLaunches(ctx0, reporterAPI, service); err != nil {
		return err
	}
	l, err := reporterAPI.Create(ctx0, req)
	if err != nil {
		return fmt.Errorf("create launch: %w", err)
	}
	fmt.Printf("created launch %s (sampling %.4g%% of GET traffic to %s)\n", l.ID, percent, shadow)
	if secondary != "" {
		fmt.Printf("secondary %s: differences it shows against the primary are noise, not regressions\n", secondary)
	}
	// The mirror picks the launch up from the KV bucket on its next request;
	// give the watch a moment so the first requests are sampled too.
	time.Sleep(500 * time.Millisecond)

	paths := []func(i int) string{
		func(i int) string { return fmt.Sprintf("/api/users/%d", 1+i%500) },
		func(i int) string { return fmt.Sprintf("/api/orders/%d", 1+i%800) },
		func(i int) string { return fmt.Sprintf("/api/search?q=item%d", i%40) },
		func(i int) string { return fmt.Sprintf("/api/inventory/%d", 10000+i%97) },
		func(i int) string { return "/api/status" },
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	// tokens paces the clients at rate requests per second.
	tokens := make(chan struct{})
	if rate > 0 {
		go func() {
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					close(tokens)
					return
				case <-tick.C:
					select {
					case tokens <- struct{}{}:
					default: // clients are behind; do not queue a burst
					}
				}
			}
		}()
	} else {
		close(tokens)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += workers {
				if rate > 0 {
					if _, ok := <-tokens; !ok {
						return
					}
				}
				resp, err := client.Get(mirror + paths[i%len(paths)](i))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					failed.Add(1) // the primary never fails: a 5xx here is darklaunch's fault
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("sent %d requests through the mirror in %s; %d client-visible failures\n", sent.Load(), duration, failed.Load())

	// Wait until the comparisons stop growing: the pipeline has caught up.
	var rep *api.Report
	var last uint64
	stable := 0
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline) && stable < 3; {
		time.Sleep(time.Second)
		if rep, err = reporterAPI.Report(ctx0, l.ID); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if rep.Totals.Compared == last && last > 0 {
			stable++
		} else {
			stable = 0
		}
		last = rep.Totals.Compared
	}
	fmt.Println()
	dlclient.PrintReportExamples(os.Stdout, rep, reporterAPI.ClassExamples(ctx0, rep, func(fingerprint string, err error) {
		fmt.Fprintf(os.Stderr, "examples of class %s: %v\n", fingerprint, err)
	}))
	fmt.Printf("Explore:\n  dashboard   %s/\n  report      %s/v1/launches/%s/report\n  launches    %s/v1/launches\n",
		reporter, reporter, l.ID, reporter)
	fmt.Printf("  ClickHouse  clickhouse-client --port 9000 --query \"SELECT route, count(), sum(match = 0 AND shadow_error = '') AS raw_mismatches FROM darklaunch.comparisons FINAL WHERE launch_id = '%s' GROUP BY route\"\n", l.ID)
	fmt.Println("Stop the stack with: make down")
	if failed.Load() > 0 {
		return fmt.Errorf("%d requests failed at the client", failed.Load())
	}
	return nil
}

// demoPrefix starts the name of every launch demo-load creates.
const demoPrefix = "demo "

func retireDemoLaunches(ctx context.Context, reporterAPI *dlclient.Client, service string) error {
	ls, err := reporterAPI.List(ctx)
	if err != nil {
		return fmt.Errorf("list launches: %w", err)
	}
	for _, old := range ls {
		if old.Service != service || !strings.HasPrefix(old.Name, demoPrefix) ||
			old.Status == launch.StatusRolledBack || old.Status == launch.StatusPromoted {
			continue
		}
		if _, err := reporterAPI.Action(ctx, old.ID, launch.ActionRollback, "superseded by a new demo run"); err != nil {
			return fmt.Errorf("roll back the earlier demo launch %s: %w", old.ID, err)
		}
		fmt.Printf("rolled back the earlier demo launch %s (%s)\n", old.ID, old.Name)
	}
	return nil
}
