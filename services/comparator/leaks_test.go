package comparator

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/pkg/compare"
	"github.com/darklaunch/darklaunch/pkg/envelope"
	"github.com/darklaunch/darklaunch/pkg/testenv"
)

// TestNoSecretsInClickHouse: what a pair carries in clear (a URL's query
// and userinfo in a shadow's or secondary's error, credential-looking
// values under innocuous keys and in text bodies, the request's cookie
// echoed back) reaches neither the comparisons table (shadow_error,
// secondary_error, diff_summary, compare_note) nor the examples table.
func TestNoSecretsInClickHouse(t *testing.T) {
	h := newHarness(t, testenv.StartClickHouse(t))
	l := h.createLaunch(compare.Rules{})
	r := h.start(h.config())
	waitReady(t, r)

	const (
		jwt    = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJlLW9mLWFubnMtdG9rZW4"
		awsKey = "AKIAZZZZSECRETKEY123"
		cookie = "c2Vzc2lvbi1vZi1hbm4tNDI"
	)
	secrets := []string{"tok-in-query", "hunter2", jwt[len(jwt)-12:], awsKey, cookie[len(cookie)-10:], "sk_live_0123456789abcdef"}
	reqHeaders := http.Header{"Cookie": {"session=" + cookie + "; lang=en"}}

	failedPair := newPair(l.ID, envelope.NewID(), "/a", 200, `{}`, 0, "")
	failedPair.Shadow = envelope.Outcome{Error: `Get "http://bob:hunter2@shadow:8080/a?access_token=tok-in-query": dial tcp: connection refused`, ErrorKind: envelope.ErrorRefused}
	failedPair.Secondary = &envelope.Outcome{Error: `Get "http://secondary/a?access_token=tok-in-query#x": EOF`, ErrorKind: envelope.ErrorReset}

	textPair := newPair(l.ID, envelope.NewID(), "/b", 200, "", 200, "")
	textPair.Envelope.Request.Headers = reqHeaders
	for i, resp := range []*envelope.Response{&textPair.Envelope.Primary, &textPair.Shadow.Response} {
		body := fmt.Sprintf("session %s token %s v%d", cookie, jwt, i)
		resp.Headers = http.Header{"Content-Type": {"text/plain"}}
		resp.Body, resp.BodySize = []byte(body), int64(len(body))
	}

	jsonPair := newPair(l.ID, envelope.NewID(), "/c", 200,
		`{"debug":"`+jwt+`","cloud":"`+awsKey+`","seen":"session=`+cookie+`","pay":"sk_live_0123456789abcdef","v":1}`, 200,
		`{"debug":"`+jwt+`","cloud":"`+awsKey+`","seen":"session=`+cookie+`","pay":"sk_live_0123456789abcdef","v":2}`)
	jsonPair.Envelope.Request.Headers = reqHeaders
	jsonPair.Envelope.Request.RawQuery = "access_token=tok-in-query&id=" + jwt

	for _, p := range []*envelope.Pair{failedPair, textPair, jsonPair} {
		h.publish(p, "")
	}
	h.waitRows(l.ID, 3)
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := r.Stats(); st.Examples != 2 {
			return fmt.Errorf("%d examples written, want 2", st.Examples)
		}
		return nil
	})

	rows := h.tableText("comparisons", l.ID)
	examples := h.tableText("examples", l.ID)
	for _, s := range secrets {
		if strings.Contains(rows, s) {
			t.Errorf("the comparisons table holds %q:\n%s", s, rows)
		}
		if strings.Contains(examples, s) {
			t.Errorf("the examples table holds %q:\n%s", s, examples)
		}
	}
	for _, want := range []string{"shadow:8080/a?[REDACTED]", "[REDACTED]@shadow", "line 1", compare.Redacted} {
		if !strings.Contains(rows, want) {
			t.Errorf("the comparisons table lacks %q:\n%s", want, rows)
		}
	}
}
