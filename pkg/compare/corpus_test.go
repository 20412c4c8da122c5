package compare

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/envelope"
)

// corpusResponse is one side of a corpus case.
type corpusResponse struct {
	Status      int         `json:"status"`
	ContentType string      `json:"content_type"`
	Headers     http.Header `json:"headers"`
	Body        string      `json:"body"`
}

func (c corpusResponse) response() *envelope.Response {
	r := &envelope.Response{Status: c.Status, Headers: http.Header{}, Body: []byte(c.Body), BodySize: int64(len(c.Body))}
	if r.Status == 0 {
		r.Status = 200
	}
	for k, v := range c.Headers {
		r.Headers[http.CanonicalHeaderKey(k)] = v
	}
	r.Headers.Set("Content-Type", "application/json")
	if c.ContentType != "" {
		r.Headers.Set("Content-Type", c.ContentType)
	}
	return r
}

type corpusCase struct {
	Name      string         `json:"name"`
	Why       string         `json:"why"`
	Compare   Rules          `json:"compare"`
	Primary   corpusResponse `json:"primary"`
	Secondary corpusResponse `json:"secondary"`
	Shadow    corpusResponse `json:"shadow"`
	Real      []string       `json:"real"`
	Noise     []string       `json:"noise"`
}

// TestDetectionCorpus runs every case of testdata/detect as the comparator
// does (see its README): the real diffs and the noisy paths must be
// exactly the listed ones.
func TestDetectionCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/detect/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []corpusCase
		if err := json.Unmarshal(data, &cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cases {
			n++
			t.Run(filepath.Base(f)+"/"+c.Name, func(t *testing.T) {
				cmp := Comparer{Rules: compiled(t, c.Compare), Shapes: true}
				p := c.Primary.response()
				shadow := cmp.Pair(p, c.Shadow.response())
				sec := cmp.Pair(p, c.Secondary.response())
				if shadow.Note != "" || sec.Note != "" {
					t.Errorf("notes: %q / %q", shadow.Note, sec.Note)
				}
				diffs, noise := Classify(shadow.Diffs, sec.Diffs)
				real, noisy := []string{}, []string{}
				for i, d := range diffs {
					if noise[i] {
						noisy = append(noisy, d.Path)
					} else {
						real = append(real, d.Path+" "+d.Kind)
					}
					if d.Kind == KindFormatChanged && d.Generalized != FormatChangedPath(Generalize(d.Path), d.Before, d.After) {
						t.Errorf("format_changed %s: generalized %q", d.Path, d.Generalized)
					}
				}
				slices.Sort(real)
				slices.Sort(noisy)
				want, wantNoise := slices.Sorted(slices.Values(c.Real)), slices.Sorted(slices.Values(c.Noise))
				if !slices.Equal(real, want) || !slices.Equal(noisy, wantNoise) {
					t.Errorf("%s\nreal  %q, want %q\nnoise %q, want %q\nshadow diffs %+v\nsecondary diffs %+v",
						c.Why, real, want, noisy, wantNoise, shadow.Diffs, sec.Diffs)
				}
			})
		}
	}
	if n < 20 {
		t.Errorf("the corpus has %d cases: some file was not read", n)
	}
}
