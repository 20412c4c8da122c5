package compare

import (
	"errors"
	"testing"
)

func TestLookup(t *testing.T) {
	body := []byte(`{"a": {"b c": [10, {"d": "x"}]}, "n": null, "dup": 1, "dup": 2}`)
	for path, want := range map[string]string{
		"$": string(body), "$.a.b": "", `$.a["b c"][0]`: "10", `$.a["b c"][1].d`: `"x"`, `$.a["b c"][1]`: `{"d": "x"}`,
		"$.n": "null", "$.dup": "2", `$.a["b c"][2]`: "", "$.n.x": "", "$[0]": "",
	} {
		got, err := Lookup("application/json", body, path)
		switch {
		case want == "" && !errors.Is(err, ErrNoValue):
			t.Errorf("Lookup(%s) = %s, %v; want ErrNoValue", path, got, err)
		case want != "" && (err != nil || string(got) != want):
			t.Errorf("Lookup(%s) = %s, %v; want %s", path, got, err, want)
		}
	}
	seq := []byte("{\"v\": 1}\n\n{\"v\": 2, \"w\": [true]}\n")
	if got, err := Lookup("application/x-ndjson", seq, "$[1].w[0]"); err != nil || string(got) != "true" {
		t.Errorf("NDJSON: %s %v", got, err)
	}
	if got, err := Lookup("application/json-seq", []byte("\x1e{\"v\":\n 3}\n"), "$[0].v"); err != nil || string(got) != "3" {
		t.Errorf("JSON text sequence: %s %v", got, err)
	}
	for _, bad := range []struct{ mt, body, path string }{
		{"application/json", `{"a":1}`, "$..a"}, {"application/json", `{"a":1}`, "$.a[*]"}, {"application/json", `{"a":1}`, "a"},
		{"application/json", `{"a":`, "$.a"}, {"application/x-ndjson", "{\"a\":1}\n{", "$[0].a"},
	} {
		if got, err := Lookup(bad.mt, []byte(bad.body), bad.path); err == nil || errors.Is(err, ErrNoValue) {
			t.Errorf("Lookup(%q, %q) = %s, %v; want an error", bad.body, bad.path, got, err)
		}
	}
}
