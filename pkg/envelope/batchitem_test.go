package envelope

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"
)

// BatchItem cuts one item out of a batch, in the batch's framing version,
// as a batch of its own that decodes to that item alone, its headers
// included.
func TestBatchItem(t *testing.T) {
	now := time.Now().UTC()
	a := &Envelope{V: Version, ID: "a", LaunchID: "l", TapID: "t", ReceivedAt: now, Request: Request{Method: "GET", Path: "/a", Body: []byte("ra")}, Primary: Response{Status: 200, Body: []byte("pa")}}
	b := &Envelope{V: Version, ID: "b", LaunchID: "l", TapID: "t", ReceivedAt: now,
		Request: Request{Method: "GET", Path: "/b", Headers: browserRequest()},
		Primary: Response{Status: 200, Body: []byte("pb"), Headers: http.Header{"X-A": {"1", "2"}}}}
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			data := w.envelope(nil, []*Envelope{a, b})
			one, err := BatchItem(data, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(one[:len(batchMagic)], data[:len(batchMagic)]) {
				t.Fatalf("item framed as %q, the batch as %q", one[:len(batchMagic)], data[:len(batchMagic)])
			}
			if item := one[len(batchMagic)+1:]; !bytes.HasSuffix(data, item) || len(item) < 100 {
				t.Fatalf("the item's bytes changed: %q is not the end of %q", item, data)
			}
			envs, bad, err := DecodeEnvelopeBatch(one)
			if err != nil || len(bad) != 0 || len(envs) != 1 || !reflect.DeepEqual(envs[0], b) {
				t.Fatalf("item 1: %v %v %v", envs, bad, err)
			}
			if _, err := BatchItem(data, 2); !errors.Is(err, ErrMalformed) {
				t.Errorf("item 2 of 2: %v", err)
			}
		})
	}
}
