package reporter

import (
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/pkg/launch"
)

// FuzzParseTokens: a tokens file of any content is read or refused, never
// a panic; a refusal names its line (or says the file holds no token), and
// what is read has valid names, scopes and distinct digests.
func FuzzParseTokens(f *testing.F) {
	f.Add("# comment\nci operate 0123456789abcdef0123\nadmin admin sha256:" + strings.Repeat("ab", 32) + " # trailing\n")
	f.Add("a read short\n")
	f.Add("a\tread\t0123456789abcdef0123\r\nb read 0123456789abcdef0123\n")
	f.Add("x read sha256:zz\n\x00\xff")
	f.Fuzz(func(t *testing.T, file string) {
		tokens, err := parseTokens(strings.NewReader(file))
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "line ") && !strings.Contains(msg, "holds no token") && !strings.Contains(msg, "token too long") {
				t.Fatalf("error %q names no line", msg)
			}
			return
		}
		seen := map[[32]byte]bool{}
		for _, tk := range tokens {
			if !tokenName.MatchString(tk.name) || tk.scope < launch.ScopeRead || tk.scope > launch.ScopeAdmin || seen[tk.digest] {
				t.Fatalf("read %+v", tk)
			}
			seen[tk.digest] = true
		}
	})
}
