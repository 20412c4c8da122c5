package testenv

import (
	"encoding/json"
	"net/http"
	"strings"
)

// EchoCredentials is a handler that gives the request's credentials back,
// as a careless debug endpoint would: a JSON body with every Cookie value
// (by name) and the Authorization credential (after its scheme), and an
// X-Debug-Session header echoing the sid cookie. Tests of echo masking
// serve it as a primary, shadow or secondary.
func EchoCredentials(w http.ResponseWriter, r *http.Request) {
	cookies := map[string]string{}
	for _, c := range r.Cookies() {
		cookies[c.Name] = c.Value
	}
	_, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if c, err := r.Cookie("sid"); err == nil {
		w.Header().Set("X-Debug-Session", "session "+c.Value)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"cookies": cookies, "auth": cred})
}
