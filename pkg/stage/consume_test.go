package stage

import (
	"context"
	"testing"
)

type panicking struct{}

func (panicking) Start(context.Context) error  { return nil }
func (panicking) Handle(context.Context, *Msg) { panic("boom") }

// A panic in Handle is recovered at the worker's top, counted, and the
// delivery handed back.
func TestHandleRecoversAPanic(t *testing.T) {
	s := bareStage(t)
	s.h = panicking{}
	raw := &fakeMsg{}
	s.handle(context.Background(), s.receive(raw))
	if st := s.Stats(); st.Panics != 1 || st.Naks != 1 || raw.naks != 1 || st.InFlight != 0 {
		t.Errorf("after a panic: stats %+v, naks sent %d", st, raw.naks)
	}
}
