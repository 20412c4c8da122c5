package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

func testPair(req, primary, shadow, secondary int) *Pair {
	resp := func(n int) Response {
		return Response{Status: 200, Headers: http.Header{"Content-Type": {"text/plain"}}, Body: bytes.Repeat([]byte("x"), n), BodySize: int64(n)}
	}
	p := &Pair{V: Version, Envelope: Envelope{V: Version, ID: "e1", LaunchID: "l1", ReceivedAt: time.Unix(1, 0).UTC(),
		Request: Request{Method: "POST", Path: "/", Body: bytes.Repeat([]byte("r"), req), BodySize: int64(req)}, Primary: resp(primary)},
		Shadow: Outcome{Response: resp(shadow)}}
	if secondary >= 0 {
		p.Secondary = &Outcome{Response: resp(secondary)}
	}
	return p
}

func TestFitPair(t *testing.T) {
	for _, tc := range []struct {
		name               string
		req, prim, sh, sec int
		limit              int
		wantCut            [4]bool // request, primary, shadow, secondary
		wantErr            bool
	}{
		{"fits", 100, 100, 100, 100, 10000, [4]bool{}, false},
		{"no limit", 1e5, 1e5, 1e5, -1, 0, [4]bool{}, false},
		{"shadow cut", 10, 10, 200000, -1, 100000, [4]bool{false, false, true, false}, false},
		{"large ones share", 10, 150000, 150000, 150000, 200000, [4]bool{false, true, true, true}, false},
		{"no room", 10, 10, 10, 10, 200, [4]bool{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPair(tc.req, tc.prim, tc.sh, tc.sec)
			data, _ := json.Marshal(p)
			out, err := FitPair(p, data, tc.limit)
			if tc.wantErr {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err %v, want ErrTooLarge", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.limit > 0 && len(out) > tc.limit {
				t.Fatalf("%d bytes over the limit %d", len(out), tc.limit)
			}
			got, err := DecodePair(out)
			if err != nil {
				t.Fatal(err)
			}
			cut := [4]bool{got.Envelope.Request.BodyTruncated, got.Envelope.Primary.BodyTruncated, got.Shadow.BodyTruncated}
			if got.Secondary != nil {
				cut[3] = got.Secondary.BodyTruncated
			}
			if cut != tc.wantCut {
				t.Errorf("truncated %v, want %v", cut, tc.wantCut)
			}
			if got.Shadow.BodySize != int64(tc.sh) || got.Envelope.Primary.BodySize != int64(tc.prim) {
				t.Errorf("sizes changed: %d %d", got.Shadow.BodySize, got.Envelope.Primary.BodySize)
			}
			if tc.limit > 0 && cut != [4]bool{} && len(out) < tc.limit*9/10 {
				t.Errorf("cut too much: %d bytes of %d", len(out), tc.limit)
			}
		})
	}
}
