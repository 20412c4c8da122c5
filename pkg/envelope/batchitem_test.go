package envelope

import (
	"errors"
	"testing"
	"time"
)

// BatchItem cuts one item out of a batch, bad JSON included, as a batch of
// its own that decodes to that item alone.
func TestBatchItem(t *testing.T) {
	now := time.Now().UTC()
	a := &Envelope{V: Version, ID: "a", LaunchID: "l", TapID: "t", ReceivedAt: now, Request: Request{Method: "GET", Path: "/a", Body: []byte("ra")}, Primary: Response{Status: 200, Body: []byte("pa")}}
	b := &Envelope{V: Version, ID: "b", LaunchID: "l", TapID: "t", ReceivedAt: now, Request: Request{Method: "GET", Path: "/b"}, Primary: Response{Status: 200, Body: []byte("pb")}}
	data, err := AppendEnvelopeBatch(nil, []*Envelope{a, b})
	if err != nil {
		t.Fatal(err)
	}
	one, err := BatchItem(data, 1)
	if err != nil {
		t.Fatal(err)
	}
	envs, bad, err := DecodeEnvelopeBatch(one)
	if err != nil || len(bad) != 0 || len(envs) != 1 || envs[0].ID != "b" || string(envs[0].Primary.Body) != "pb" {
		t.Fatalf("item 1: %v %v %v", envs, bad, err)
	}
	if _, err := BatchItem(data, 2); !errors.Is(err, ErrMalformed) {
		t.Errorf("item 2 of 2: %v", err)
	}
}
