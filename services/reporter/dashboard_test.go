package reporter_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is the path of the Chromium binary (Debian's chromium,
// installed by make deps); a test that needs it fails without it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run make deps (scripts/deps.sh installs Debian's chromium)")
	return ""
}

// browser starts a headless Chromium for the test, with a profile of its
// own, and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	return tab
}

// TestDashboardToken drives the dashboard in a real headless Chromium
// against a real reporter: it asks for a token, shows the 401 of a wrong
// one, loads the launches with a right one, and a reload in the same
// session does not ask again (the token is in sessionStorage, not in
// localStorage).
func TestDashboardToken(t *testing.T) {
	e := startEnv(t, envOptions{})
	l := e.create("launch-seen-in-the-browser", 5)
	tab := browser(t)

	// until polls a JavaScript condition on the page.
	until := func(what, cond string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var ok bool
			if err := chromedp.Poll(cond, &ok, chromedp.WithPollingTimeout(30*time.Second)).Do(ctx); err != nil {
				return fmt.Errorf("%s (%s): %w", what, cond, err)
			}
			return nil
		})
	}
	loginShown := `!document.querySelector("#login").hidden && document.querySelector("#app").hidden`
	launchesShown := `document.querySelector("#login").hidden && !document.querySelector("#app").hidden &&
		document.querySelector("#launches tbody").textContent.includes(` + strconv.Quote(l.Name) + `)`

	var msg string
	if err := chromedp.Run(tab,
		chromedp.Navigate(e.base+"/"),
		until("the page asks for a token", loginShown),
		chromedp.SendKeys("#token", "a-wrong-token-0123456789", chromedp.ByQuery),
		chromedp.Click(`#loginform button[type=submit]`, chromedp.ByQuery),
		until("a wrong token shows the 401", `document.querySelector("#loginmsg").textContent.includes("401")`),
		chromedp.Text("#loginmsg", &msg, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	if want := "the token is not valid"; !strings.Contains(msg, want) {
		t.Fatalf("401 message %q lacks the API's %q", msg, want)
	}

	var stored, persistent string
	if err := chromedp.Run(tab,
		until("the form is back", loginShown),
		chromedp.SendKeys("#token", testTokens["read"], chromedp.ByQuery),
		chromedp.Click(`#loginform button[type=submit]`, chromedp.ByQuery),
		until("a right token loads the launches", launchesShown),
		chromedp.Reload(),
		until("a reload in the same session does not ask again", launchesShown),
		chromedp.Evaluate(`sessionStorage.getItem("darklaunch-token")`, &stored),
		chromedp.Evaluate(`JSON.stringify(localStorage)`, &persistent),
	); err != nil {
		t.Fatal(err)
	}
	if stored != testTokens["read"] || persistent != "{}" {
		t.Fatalf("sessionStorage token %q, localStorage %s: the token belongs in the session only", stored, persistent)
	}

	// A read token sees the launch but may not pause it: the 403 shows.
	if err := chromedp.Run(tab,
		chromedp.Click(`#launches tbody tr`, chromedp.ByQuery),
		until("the launch's detail shows", `!document.querySelector("#dbody").hidden`),
		chromedp.Click(`button[data-action=pause]`, chromedp.ByQuery),
		until("the pause's 403 shows", `document.querySelector("#msg").textContent.includes("needs operate")`),
	); err != nil {
		t.Fatal(err)
	}
}
