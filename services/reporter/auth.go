package reporter

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/darklaunch/darklaunch/pkg/config"
	"github.com/darklaunch/darklaunch/pkg/launch"
)

// The control API's authentication (docs/api.md, "Authentication"): each
// /v1 request carries "Authorization: Bearer <token>"; the token's scope
// (launch.Scope) must allow what the request does. Tokens come from the
// file REPORTER_TOKENS_FILE, one per line: NAME SCOPE TOKEN, where TOKEN
// may be written sha256:<hex> so that the file need not hold the secret.

var (
	// errUnauthenticated: no token, or one no line of the file holds (401).
	errUnauthenticated = errors.New("unauthenticated")
	// errForbidden: a valid token whose scope is too small (403).
	errForbidden = errors.New("forbidden")
)

// Auth modes (REPORTER_AUTH).
const (
	authOn  = "on"
	authOff = "off"
)

// minTokenLen is the shortest token a tokens file may hold in clear: a
// bearer token is a password nobody types, so a short one is a mistake.
const minTokenLen = 16

// tokenName is what a token's NAME may be: it is the actor in the audit
// log, so it must read as one word.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// token is one line of the tokens file.
type token struct {
	name   string
	scope  launch.Scope
	digest [sha256.Size]byte
}

// principal is who made an API request: a token's name and scope, or
// nobody with every scope when authentication is off.
type principal struct {
	name  string // empty when authentication is off
	scope launch.Scope
}

type principalKey struct{}

// authenticator checks bearer tokens against the tokens file, or lets
// every request in when off (REPORTER_AUTH=off).
type authenticator struct {
	off    bool
	tokens []token
}

// newAuthenticator reads the tokens file the settings name, or returns an
// authenticator that lets everyone in when REPORTER_AUTH is off.
func newAuthenticator(cfg Config) (*authenticator, error) {
	if cfg.Auth == authOff {
		return &authenticator{off: true}, nil
	}
	f, err := os.Open(cfg.TokensFile)
	if err != nil {
		return nil, fmt.Errorf("%w: REPORTER_TOKENS_FILE: %w", config.ErrSettings, err)
	}
	defer f.Close()
	tokens, err := parseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("%w: REPORTER_TOKENS_FILE %s: %w", config.ErrSettings, cfg.TokensFile, err)
	}
	return &authenticator{tokens: tokens}, nil
}

// parseTokens reads a tokens file: one "NAME SCOPE TOKEN" per line,
// blank lines and # comments (from a field starting with # to the end of
// the line) ignored. An error names the line.
func parseTokens(r io.Reader) ([]token, error) {
	var tokens []token
	names := map[string]int{}
	digests := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		t, err := parseToken(fields)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if prev, ok := names[t.name]; ok {
			return nil, fmt.Errorf("line %d: name %q is already used on line %d", n, t.name, prev)
		}
		if prev, ok := digests[t.digest]; ok {
			return nil, fmt.Errorf("line %d: the token of %q is the one of line %d; give each name its own token", n, t.name, prev)
		}
		names[t.name], digests[t.digest] = n, n
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, errors.New("holds no token (lines of NAME SCOPE TOKEN)")
	}
	return tokens, nil
}

func parseToken(fields []string) (token, error) {
	if len(fields) != 3 {
		return token{}, fmt.Errorf("has %d fields, want 3: NAME SCOPE TOKEN (TOKEN in clear or sha256:<64 hex digits>)", len(fields))
	}
	t := token{name: fields[0]}
	if !tokenName.MatchString(t.name) {
		return token{}, fmt.Errorf("name %q must be 1-64 letters, digits, '.', '_', '@' or '-'", t.name)
	}
	var err error
	if t.scope, err = launch.ParseScope(fields[1]); err != nil {
		return token{}, err
	}
	secret := fields[2]
	if hexDigest, ok := strings.CutPrefix(secret, "sha256:"); ok {
		d, err := hex.DecodeString(hexDigest)
		if err != nil || len(d) != sha256.Size {
			return token{}, fmt.Errorf("token of %q: sha256: must be followed by 64 hex digits", t.name)
		}
		copy(t.digest[:], d)
		return t, nil
	}
	if len(secret) < minTokenLen {
		return token{}, fmt.Errorf("token of %q is shorter than %d characters", t.name, minTokenLen)
	}
	t.digest = sha256.Sum256([]byte(secret))
	return t, nil
}

// authenticate finds the request's bearer token. Every line is compared
// (constant time, on sha256 digests), so the time taken says nothing
// about which token, or how much of one, matched.
func (a *authenticator) authenticate(r *http.Request) (principal, error) {
	if a.off {
		return principal{scope: launch.ScopeAdmin}, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return principal{}, fmt.Errorf("%w: this API needs a token: send Authorization: Bearer <token>", errUnauthenticated)
	}
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return principal{}, fmt.Errorf("%w: the Authorization header must be Bearer <token>", errUnauthenticated)
	}
	d := sha256.Sum256([]byte(secret))
	match := -1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(d[:], a.tokens[i].digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return principal{}, fmt.Errorf("%w: the token is not valid", errUnauthenticated)
	}
	return principal{name: a.tokens[match].name, scope: a.tokens[match].scope}, nil
}

// allow refuses an operation that needs more than the principal's scope.
func (p principal) allow(need launch.Scope) error {
	if p.scope.Allows(need) {
		return nil
	}
	return fmt.Errorf("%w: token %q has scope %s; this needs %s", errForbidden, p.name, p.scope, need)
}

// authorize checks, within a handler, that the request's principal may do
// what needs scope (a PATCH's scope depends on its fields).
func (s *Service) authorize(r *http.Request, need launch.Scope) error {
	p, _ := r.Context().Value(principalKey{}).(principal)
	if err := p.allow(need); err != nil {
		s.metrics.authFailures.WithLabelValues("scope").Inc()
		return err
	}
	return nil
}

// authenticated authenticates the request and checks it against the
// route's least scope, then runs h with the principal in its context.
func (s *Service) authenticated(w http.ResponseWriter, r *http.Request, need launch.Scope, h apiFunc) error {
	p, err := s.auth.authenticate(r)
	if err != nil {
		s.metrics.authFailures.WithLabelValues("token").Inc()
		return err
	}
	r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
	if err := s.authorize(r, need); err != nil {
		return err
	}
	return h(w, r)
}

// actor names the caller of an API request in the audit log: the token's
// name, or with authentication off the TCP peer ("api:<address>"; a proxy
// in front of the reporter shows as itself, forwarding headers are not
// trusted).
func actor(r *http.Request) string {
	if p, _ := r.Context().Value(principalKey{}).(principal); p.name != "" {
		return p.name
	}
	return "api:" + r.RemoteAddr
}
