// Command darkctl drives darklaunch from a terminal or a deploy pipeline,
// over the reporter's HTTP API.
//
//	darkctl [-reporter URL] <command> [flags] [args]
//
// Exit codes: 0 success (for verdict and wait: pass), 1 fail, 2 inconclusive
// or timeout, 3 usage or API error. A pipeline branches on them:
//
//	darkctl wait -timeout 30m $ID && deploy-promote || rollback
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/darklaunch/darklaunch/pkg/api"
	"github.com/darklaunch/darklaunch/pkg/client"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// Exit codes.
const (
	exitOK           = 0
	exitFail         = 1
	exitInconclusive = 2
	exitError        = 3
)

const usage = `darkctl: control darklaunch launches through the reporter API

usage: darkctl [-reporter URL] [-json] <command> [flags] [args]

commands:
  create -name N -shadow URL [-service S] [-percent P] [-methods GET,HEAD] [-secondary URL]
         [-sticky header:X-User-Id] [-fields '{"gates": {...}, "ramp": {...}, "compare": {...}}']
  list                          all launches
  show ID                       one launch
  percent ID P                  set the sample percentage
  pause ID [-reason R]
  resume ID [-reason R]
  promote ID [-reason R]
  rollback ID [-reason R]
  report ID                     the report, as tables: every diff class, each difference
                                with one before -> after value from a stored example
  verdict ID                    the verdict; exit 0 pass, 1 fail, 2 inconclusive
  wait ID [-timeout 30m] [-interval 10s]
                                poll the verdict until pass or fail; exit 0 pass,
                                1 fail, 2 still inconclusive at the timeout

The reporter URL comes from -reporter or $DARKLAUNCH_REPORTER (default http://127.0.0.1:8090).
The API token comes from $DARKLAUNCH_TOKEN (sent as Authorization: Bearer; list, show,
report, verdict and wait need a read token; pause, resume, rollback and percent an
operate token; create and promote an admin token).
Exit codes: 0 ok/pass, 1 fail, 2 inconclusive or timeout, 3 usage or API error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("darkctl", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { fmt.Fprint(stderr, usage) }
	def := os.Getenv("DARKLAUNCH_REPORTER")
	if def == "" {
		def = "http://127.0.0.1:8090"
	}
	reporter := global.String("reporter", def, "reporter base URL")
	asJSON := global.Bool("json", false, "print raw JSON instead of tables")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if global.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return exitError
	}
	c, err := client.New(*reporter, client.WithToken(os.Getenv("DARKLAUNCH_TOKEN")))
	if err != nil {
		fmt.Fprintln(stderr, "darkctl:", err)
		return exitError
	}
	cmd := &command{ctx: ctx, c: c, out: stdout, errOut: stderr, json: *asJSON}
	code, err := cmd.dispatch(global.Arg(0), global.Args()[1:])
	if err != nil {
		fmt.Fprintln(stderr, "darkctl:", err)
		return exitError
	}
	return code
}

type command struct {
	ctx    context.Context
	c      *client.Client
	out    io.Writer
	errOut io.Writer
	json   bool
}

// errUsage marks a command-line mistake.
var errUsage = errors.New("usage")

func (cmd *command) dispatch(name string, args []string) (int, error) {
	switch name {
	case "create":
		return cmd.create(args)
	case "list":
		ls, err := cmd.c.List(cmd.ctx)
		if err != nil {
			return exitError, err
		}
		return exitOK, cmd.printLaunches(ls...)
	case "show":
		l, err := fetch(cmd, name, args, cmd.c.Get)
		if err != nil {
			return exitError, err
		}
		return exitOK, cmd.printLaunches(l)
	case "percent":
		id, rest, err := cmd.idArgs("percent", args, nil)
		if err != nil {
			return exitError, err
		}
		if len(rest) != 1 {
			return exitError, fmt.Errorf("%w: darkctl percent ID P", errUsage)
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(rest[0], "%"), 64)
		if err != nil {
			return exitError, fmt.Errorf("%w: percentage %q is not a number", errUsage, rest[0])
		}
		l, err := cmd.c.Patch(cmd.ctx, id, api.PatchRequest{Patch: launch.Patch{SamplePercent: &p}})
		if err != nil {
			return exitError, err
		}
		return exitOK, cmd.printLaunches(l)
	case "pause", "resume", "promote", "rollback":
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		reason := fs.String("reason", "", "why (kept in the logs and the audit trail)")
		id, _, err := cmd.idArgs(name, args, fs)
		if err != nil {
			return exitError, err
		}
		l, err := cmd.c.Action(cmd.ctx, id, launch.Action(name), *reason)
		if err != nil {
			return exitError, err
		}
		return exitOK, cmd.printLaunches(l)
	case "report":
		r, err := fetch(cmd, name, args, cmd.c.Report)
		if err != nil {
			return exitError, err
		}
		if cmd.json {
			return exitOK, cmd.printJSON(r)
		}
		client.PrintReportExamples(cmd.out, r, cmd.classExamples(r))
		return exitOK, nil
	case "verdict":
		v, err := fetch(cmd, name, args, cmd.c.Verdict)
		if err != nil {
			return exitError, err
		}
		return verdictCode(v.Verdict), cmd.printVerdict(v)
	case "wait":
		return cmd.wait(args)
	case "help", "-h", "--help":
		fmt.Fprint(cmd.out, usage)
		return exitOK, nil
	}
	return exitError, fmt.Errorf("%w: unknown command %q (darkctl help)", errUsage, name)
}

// classExamples fetches one stored example of each diff class of a report
// that has some, so each difference shows a before → after. A class whose
// examples cannot be read is listed without them, with a warning.
func (cmd *command) classExamples(r *api.Report) map[string]*api.Example {
	return cmd.c.ClassExamples(cmd.ctx, r, func(fingerprint string, err error) {
		fmt.Fprintf(cmd.errOut, "darkctl: examples of class %s: %v\n", fingerprint, err)
	})
}

// fetch reads one launch id from args and returns what get answers for it.
func fetch[T any](cmd *command, name string, args []string, get func(context.Context, string) (T, error)) (T, error) {
	id, _, err := cmd.idArgs(name, args, nil)
	if err != nil {
		var zero T
		return zero, err
	}
	return get(cmd.ctx, id)
}

// idArgs parses flags (if fs is given) around one launch id.
func (cmd *command) idArgs(name string, args []string, fs *flag.FlagSet) (string, []string, error) {
	if fs == nil {
		fs = flag.NewFlagSet(name, flag.ContinueOnError)
	}
	fs.SetOutput(cmd.errOut)
	// Accept flags before or after the id.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if id == "" {
		return "", nil, fmt.Errorf("%w: darkctl %s needs a launch id", errUsage, name)
	}
	return id, rest, nil
}

func (cmd *command) create(args []string) (int, error) {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	fs.SetOutput(cmd.errOut)
	name := fs.String("name", "", "launch name (required)")
	shadow := fs.String("shadow", "", "the new version's base URL (required)")
	service := fs.String("service", "", "the mirror's MIRROR_SERVICE (default: default)")
	percent := fs.Float64("percent", 0, "sample percent, 0-100")
	methods := fs.String("methods", "", "comma-separated methods to mirror (default GET,HEAD,OPTIONS)")
	secondary := fs.String("secondary", "", "a second instance of the primary's version, for noise cancellation")
	sticky := fs.String("sticky", "", "sticky sampling key: header:NAME, cookie:NAME or query:NAME")
	extra := fs.String("fields", "", `more launch fields as a JSON object, e.g. '{"gates": {"min_pairs": 500}, "ramp": {...}, "compare": {...}}'`)
	if err := fs.Parse(args); err != nil {
		return exitError, fmt.Errorf("%w: %v", errUsage, err)
	}
	var req api.CreateRequest
	if *extra != "" {
		dec := json.NewDecoder(strings.NewReader(*extra))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return exitError, fmt.Errorf("%w: -fields is not a JSON object of launch fields: %v", errUsage, err)
		}
	}
	// The flags win over -fields.
	req.Name, req.ShadowURL, req.SamplePercent = *name, *shadow, percent
	for field, v := range map[*string]string{&req.Service: *service, &req.SecondaryURL: *secondary, &req.StickyKey: *sticky} {
		if v != "" {
			*field = v
		}
	}
	if *methods != "" {
		req.Methods = strings.Split(*methods, ",")
	}
	l, err := cmd.c.Create(cmd.ctx, req)
	if err != nil {
		return exitError, err
	}
	return exitOK, cmd.printLaunches(l)
}

func (cmd *command) wait(args []string) (int, error) {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Minute, "give up (exit 2) after this long")
	interval := fs.Duration("interval", 10*time.Second, "time between polls")
	id, _, err := cmd.idArgs("wait", args, fs)
	if err != nil {
		return exitError, err
	}
	if *interval <= 0 {
		return exitError, fmt.Errorf("%w: -interval must be positive", errUsage)
	}
	ctx, cancel := context.WithTimeout(cmd.ctx, *timeout)
	defer cancel()
	var last *api.Verdict
	for {
		v, err := cmd.c.Verdict(ctx, id)
		switch {
		case err == nil:
			last = v
			if v.Verdict == api.VerdictPass || v.Verdict == api.VerdictFail {
				return verdictCode(v.Verdict), cmd.printVerdict(v)
			}
		case errors.Is(err, client.ErrNotFound), ctx.Err() == nil && isClientError(err):
			return exitError, err // polling will not fix a wrong id or request
		case ctx.Err() == nil:
			fmt.Fprintln(cmd.errOut, "darkctl: verdict not available, retrying:", err)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(cmd.errOut, "darkctl: no pass or fail within %s\n", *timeout)
			if last != nil {
				_ = cmd.printVerdict(last)
			}
			return exitInconclusive, nil
		case <-time.After(*interval):
		}
	}
}

func isClientError(err error) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != 429
}

func verdictCode(v string) int {
	switch v {
	case api.VerdictPass:
		return exitOK
	case api.VerdictFail:
		return exitFail
	}
	return exitInconclusive
}

func (cmd *command) printJSON(v any) error {
	enc := json.NewEncoder(cmd.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (cmd *command) printLaunches(ls ...*launch.Launch) error {
	if cmd.json {
		if len(ls) == 1 {
			return cmd.printJSON(ls[0])
		}
		return cmd.printJSON(ls)
	}
	tw := tabwriter.NewWriter(cmd.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSERVICE\tSTATUS\tSAMPLE %\tLIVE %\tSHADOW\tUPDATED")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4g\t%.4g\t%s\t%s\n", l.ID, l.Name, l.Service, l.Status, l.SamplePercent,
			l.LivePercent, l.ShadowURL, l.UpdatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func (cmd *command) printVerdict(v *api.Verdict) error {
	if cmd.json {
		return cmd.printJSON(v)
	}
	fmt.Fprintf(cmd.out, "verdict: %s\n", v.Verdict)
	for _, r := range v.Reasons {
		fmt.Fprintf(cmd.out, "  - %s\n", r)
	}
	if len(v.Checks) > 0 {
		tw := tabwriter.NewWriter(cmd.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHECK\tVALUE\tTHRESHOLD\tOK")
		for _, c := range v.Checks {
			fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%v\n", c.Name, c.Value, c.Threshold, c.OK)
		}
		return tw.Flush()
	}
	return nil
}
