package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func validEnvelope() Envelope {
	return Envelope{V: Version, ID: NewID(), LaunchID: "l1", ReceivedAt: time.Now(),
		Request: Request{Method: "GET", Path: "/a"}, Primary: Response{Status: 200}}
}

func TestDecode(t *testing.T) {
	good := validEnvelope()
	good.Primary.Body = []byte{0, 1, 2, 0xff}
	data, _ := json.Marshal(good)
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Primary.Body, good.Primary.Body) || got.ID != good.ID {
		t.Fatalf("round trip lost data: %+v", got)
	}
	for name, mutate := range map[string]func(*Envelope){
		"version":  func(e *Envelope) { e.V = 2 },
		"id":       func(e *Envelope) { e.ID = "" },
		"launch":   func(e *Envelope) { e.LaunchID = "" },
		"method":   func(e *Envelope) { e.Request.Method = "" },
		"path":     func(e *Envelope) { e.Request.Path = "relative" },
		"received": func(e *Envelope) { e.ReceivedAt = time.Time{} },
	} {
		e := validEnvelope()
		mutate(&e)
		data, _ := json.Marshal(e)
		if _, err := Decode(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Decode([]byte("{not json")); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("bad JSON: %v", err)
	}
	if _, err := DecodePair([]byte(`{"v":1,"envelope":{}}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("pair with empty envelope: %v", err)
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := NewID()
	time.Sleep(2 * time.Millisecond)
	if b := NewID(); !(a < b) {
		t.Fatalf("ids do not sort by creation: %s then %s", a, b)
	}
}

func TestCapture(t *testing.T) {
	c := Capture{Limit: 5}
	for _, p := range []string{"ab", "cde", "fgh"} {
		if n, err := c.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if string(c.Bytes()) != "abcde" || c.Size() != 8 || !c.Truncated() {
		t.Fatalf("got %q size %d truncated %v", c.Bytes(), c.Size(), c.Truncated())
	}
	body, size, trunc, err := ReadBody(strings.NewReader("hello"), 10)
	if string(body) != "hello" || size != 5 || trunc || err != nil {
		t.Fatalf("ReadBody = %q %d %v %v", body, size, trunc, err)
	}
}
