package envelope

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FitBatchItem cuts an envelope's bodies so that, alone in a batch, it
// fits the limit: fairly between the bodies, flagged, sizes kept, and
// not much more than needed.
func TestFitBatchItem(t *testing.T) {
	mk := func(req, resp int) *Envelope {
		return &Envelope{V: Version, ID: "id", LaunchID: "l", ReceivedAt: time.Now().UTC(),
			Request: Request{Method: "POST", Path: "/", Headers: browserRequest(), Body: bytes.Repeat([]byte("q"), req), BodySize: int64(req)},
			Primary: Response{Status: 200, Headers: apiResponse(), Body: bytes.Repeat([]byte("r"), resp), BodySize: int64(resp)},
		}
	}
	for _, tc := range []struct {
		name               string
		req, resp, limit   int
		wantReqCut, wantRC bool
	}{
		{"fits", 100, 100, 10000, false, false},
		{"response cut", 10, 100000, 50000, false, true},
		{"request cut", 100000, 10, 50000, true, false},
		{"both cut", 100000, 100000, 50000, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := mk(tc.req, tc.resp)
			data, _ := AppendEnvelopeBatch(nil, []*Envelope{env})
			if err := FitBatchItem(env, len(data), tc.limit); err != nil {
				t.Fatal(err)
			}
			data, _ = AppendEnvelopeBatch(nil, []*Envelope{env})
			if len(data) > tc.limit {
				t.Fatalf("%d bytes, limit %d", len(data), tc.limit)
			}
			envs, bad, err := DecodeEnvelopeBatch(data)
			if err != nil || len(bad) > 0 {
				t.Fatal(err, bad)
			}
			got := envs[0]
			if got.Request.BodyTruncated != tc.wantReqCut || got.Primary.BodyTruncated != tc.wantRC ||
				got.Request.BodySize != int64(tc.req) || got.Primary.BodySize != int64(tc.resp) {
				t.Errorf("request %d/%d cut %v, primary %d/%d cut %v", len(got.Request.Body), got.Request.BodySize, got.Request.BodyTruncated,
					len(got.Primary.Body), got.Primary.BodySize, got.Primary.BodyTruncated)
			}
			if (tc.wantReqCut || tc.wantRC) && len(data) < tc.limit-200 {
				t.Errorf("cut too much: %d bytes of %d allowed", len(data), tc.limit)
			}
			if d := len(got.Request.Body) - len(got.Primary.Body); tc.wantReqCut && tc.wantRC && (d > 1 || d < -1) {
				t.Errorf("unfair cut: request %d, primary %d", len(got.Request.Body), len(got.Primary.Body))
			}
		})
	}
	// Whatever the limit, the fitted item fits (the header sets, outside
	// the JSON, are counted and never cut) or is refused as too large.
	var fitted int
	for limit := 500; limit < 30000; limit += 211 {
		env := mk(12000, 9000)
		data, _ := AppendEnvelopeBatch(nil, []*Envelope{env})
		err := FitBatchItem(env, len(data), limit)
		if errors.Is(err, ErrTooLarge) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fitted++
		data, _ = AppendEnvelopeBatch(nil, []*Envelope{env})
		if len(data) > limit {
			t.Fatalf("limit %d: fitted item is %d bytes", limit, len(data))
		}
		if got, bad, err := DecodeEnvelopeBatch(data); err != nil || len(bad) != 0 || len(got[0].Request.Headers) != len(browserRequest()) {
			t.Fatalf("limit %d: %v %v", limit, bad, err)
		}
	}
	if fitted < 100 {
		t.Fatalf("only %d limits fitted", fitted)
	}

	env := mk(10, 10)
	env.Request.Headers = http.Header{"X-Big": {strings.Repeat("h", 2000)}}
	data, _ := AppendEnvelopeBatch(nil, []*Envelope{env})
	if err := FitBatchItem(env, len(data), 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("headers over the limit: %v, want ErrTooLarge", err)
	}
}
