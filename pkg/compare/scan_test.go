package compare

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// scanAll scans src to its end and renders each token as kind:text, with
// name= before a member's value.
func scanAll(src string) ([]string, error) {
	var sc scanner
	sc.reset([]byte(src))
	var out []string
	for {
		t, err := sc.next()
		if err != nil {
			return out, err
		}
		tok := fmt.Sprintf("%s:%s", tokenNames[t.kind], src[t.start:t.end])
		if t.kstart >= 0 {
			tok = src[t.kstart:t.kend] + "=" + tok
		}
		out = append(out, tok)
		if t.kind == tDone {
			return out, nil
		}
	}
}

var tokenNames = map[uint8]string{tNull: "null", tFalse: "false", tTrue: "true", tNumber: "number", tString: "string",
	tArray: "array", tObject: "object", tEnd: "end", tDone: "done"}

func TestScanTokens(t *testing.T) {
	got, err := scanAll(` {"a" : [1, -2.5e+3, "x\"y", true, false, null], "b\u00e9":{}, "c":[]} `)
	want := []string{"object:{", "a=array:[", "number:1", "number:-2.5e+3", `string:"x\"y"`, "true:true",
		"false:false", "null:null", "end:]", `b\u00e9=object:{`, "end:}", "c=array:[", "end:]", "end:}", "done:"}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %q, %v\nwant %q", got, err, want)
	}
	for _, src := range []string{`0`, `"s"`, ` null `} {
		if got, err := scanAll(src); err != nil || len(got) != 2 {
			t.Errorf("%q: got %q, %v", src, got, err)
		}
	}
}

func TestScanEscapes(t *testing.T) {
	var sc scanner
	sc.reset([]byte(`{"a\nb":"c","d":"\u0041"}`))
	var esc []bool
	for {
		tok, err := sc.next()
		if err != nil {
			t.Fatal(err)
		}
		if tok.kind == tDone {
			break
		}
		if tok.kstart >= 0 {
			esc = append(esc, tok.kesc, tok.esc)
		}
	}
	if fmt.Sprint(esc) != "[true false false true]" {
		t.Fatalf("esc flags %v", esc)
	}
}

// TestScanErrors pins the message, offset and end-of-input type of every
// syntax error: the messages reach users in notes and headers.
func TestScanErrors(t *testing.T) {
	tests := []struct {
		src, want string
		eof       bool
	}{
		{``, "unexpected end of input at offset 0", true},
		{`  `, "unexpected end of input at offset 2", true},
		{`[`, "unexpected end of input at offset 1", true},
		{`[1`, "unexpected end of input at offset 2", true},
		{`[1,`, "unexpected end of input at offset 3", true},
		{`{`, "expected a member name at offset 1", true},
		{`{"a":1,`, "expected a member name at offset 7", true},
		{`{"a"`, "expected ':' after a member name at offset 4", true},
		{`{"a":`, "unexpected end of input at offset 5", true},
		{`"ab`, "unexpected end of input in a string at offset 3", true},
		{`"a\`, "unexpected end of input in a string at offset 3", true},
		{`"\u12`, "unexpected end of input in a string at offset 2", true},
		{`"\u1"`, "unexpected end of input in a string at offset 2", true},
		{`-`, "invalid number at offset 1", true},
		{`1.`, "invalid number at offset 2", true},
		{`1e+`, "invalid number at offset 3", true},
		{`tr`, "invalid literal at offset 0", true},
		{`[nul`, "invalid literal at offset 1", true},
		{`nulx`, "invalid literal at offset 0", false},
		{`tx`, "invalid literal at offset 0", false},
		{`-x`, "invalid number at offset 1", false},
		{`1.x`, "invalid number at offset 2", false},
		{`"\x"`, "invalid escape at offset 2", false},
		{`"\u12x4"`, "invalid \\u escape at offset 5", false},
		{"\"a\nb\"", "control character in a string at offset 2", false},
		{`[1,]`, "unexpected character ']' at offset 3", false},
		{`[1 2]`, "unexpected character '2' after a value at offset 3", false},
		{`{"a":1]`, "unexpected character ']' after a value at offset 6", false},
		{`{,}`, "expected a member name at offset 1", false},
		{`{"a" 1}`, "expected ':' after a member name at offset 5", false},
		{`{a:1}`, "expected a member name at offset 1", false},
		{`01`, "data after the top-level value at offset 1", false},
		{`[01]`, "unexpected character '1' after a value at offset 2", false},
		{`1 2`, "data after the top-level value at offset 2", false},
		{`{} x`, "data after the top-level value at offset 3", false},
		{`]`, "unexpected character ']' at offset 0", false},
		{`NaN`, "unexpected character 'N' at offset 0", false},
	}
	for _, tt := range tests {
		_, err := scanAll(tt.src)
		var se *syntaxError
		if !errors.As(err, &se) || err.Error() != tt.want {
			t.Errorf("%q: got %v, want %s", tt.src, err, tt.want)
			continue
		}
		if errors.Is(err, errUnexpectedEOF) != tt.eof {
			t.Errorf("%q: errors.Is(%v, errUnexpectedEOF) = %v, want %v", tt.src, err, !tt.eof, tt.eof)
		}
	}
}

// TestScanPrefixes checks that every proper prefix of a document that
// cannot end early fails as the end of the input, and the document scans.
func TestScanPrefixes(t *testing.T) {
	src := ` {"a\u00e9":[1.5e-3,-0,"s\"\\",true,false,null,{}], "b" : [ {"c":[]} ] } `
	for n := 0; n < len(src)-1; n++ {
		if _, err := scanAll(src[:n]); !errors.Is(err, errUnexpectedEOF) {
			t.Errorf("prefix %q: got %v, want an end of input", src[:n], err)
		}
	}
	if _, err := scanAll(src); err != nil {
		t.Fatal(err)
	}
}

// TestScanPendingName checks that when a member's value fails, the name
// stays pending and pos is just past its colon: redaction masks a value
// cut short from there.
func TestScanPendingName(t *testing.T) {
	var sc scanner
	sc.reset([]byte(`{"a":1, "b\n" : tru`))
	sc.next()
	if tok, err := sc.next(); err != nil || tok.kind != tNumber || tok.kstart != 2 || tok.kend != 3 {
		t.Fatalf("got %+v, %v", tok, err)
	}
	if _, _, _, ok := sc.pendingName(); ok {
		t.Fatal("a name is pending after its value")
	}
	if _, err := sc.next(); !errors.Is(err, errUnexpectedEOF) || sc.pos != 15 {
		t.Fatalf("got %v, pos %d", err, sc.pos)
	}
	if ks, ke, esc, ok := sc.pendingName(); !ok || ks != 9 || ke != 12 || !esc {
		t.Fatalf("pendingName = %d, %d, %v, %v", ks, ke, esc, ok)
	}
	sc.reset([]byte(`{"a":1, "b`))
	sc.next()
	sc.next()
	if _, err := sc.next(); !errors.Is(err, errUnexpectedEOF) || sc.pos != 6 {
		t.Fatalf("got %v, pos %d", err, sc.pos)
	}
	if _, _, _, ok := sc.pendingName(); ok {
		t.Fatal("a name cut short is pending")
	}
}

func TestScanSkip(t *testing.T) {
	src := `[{"a":[1,{"b":"]"}],"c":2}, 3]`
	var sc scanner
	sc.reset([]byte(src))
	sc.next() // [
	if tok, _ := sc.next(); tok.kind != tObject {
		t.Fatalf("got %+v", tok)
	}
	end, err := sc.skip()
	if err != nil || src[:end] != `[{"a":[1,{"b":"]"}],"c":2}` {
		t.Fatalf("skip = %d, %v", end, err)
	}
	if tok, _ := sc.next(); tok.kind != tNumber || src[tok.start:tok.end] != "3" {
		t.Fatalf("after skip: %+v", tok)
	}
	sc.reset([]byte(`[{"a":[1,}]`))
	sc.next()
	sc.next()
	if _, err := sc.skip(); err == nil || errors.Is(err, errUnexpectedEOF) {
		t.Fatalf("skip of a bad container: %v", err)
	}
	sc.reset([]byte(`[{"a":[1,`))
	sc.next()
	sc.next()
	if _, err := sc.skip(); !errors.Is(err, errUnexpectedEOF) {
		t.Fatalf("skip of a cut container: %v", err)
	}
}

// TestScanAllocs checks that a reused scanner allocates nothing.
func TestScanAllocs(t *testing.T) {
	src := []byte(`{"a":[1,2,{"b":[[["x"]]]}],"c":{"d":null,"e":"\u00e9"}}`)
	var sc scanner
	allocs := testing.AllocsPerRun(100, func() {
		sc.reset(src)
		for {
			tok, err := sc.next()
			if err != nil || tok.kind == tDone {
				return
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per document", allocs)
	}
}
