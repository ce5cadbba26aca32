package taps

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordHandler keeps every log record.
type recordHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.recs = append(*h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return attrsHandler{recordHandler: h, attrs: as}
}
func (h recordHandler) WithGroup(string) slog.Handler { return h }

type attrsHandler struct {
	recordHandler
	attrs []slog.Attr
}

func (h attrsHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.attrs...)
	return h.recordHandler.Handle(ctx, r)
}

func TestLoggingCarriesIDsAndIsSilentByDefault(t *testing.T) {
	var mu sync.Mutex
	var recs []slog.Record
	sys := newTestSystem(t, WithLogger(slog.New(recordHandler{mu: &mu, recs: &recs})))
	ln := listenLoopback(t, sys)
	c := dial(t, sys, ln)
	c.Abort()
	<-c.Done()
	mu.Lock()
	defer mu.Unlock()
	attrsOf := func(r slog.Record) map[string]string {
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
		return m
	}
	var state, racing bool
	for _, r := range recs {
		a := attrsOf(r)
		switch r.Message {
		case "connection state":
			state = true
			require.NotEmpty(t, a["connection"])
			require.NotEmpty(t, a["group"])
		case "racing: AttemptWon":
			racing = true
			require.NotEmpty(t, a["candidate"])
			require.Equal(t, "tcp", a["stack"])
		}
	}
	require.True(t, state, "state changes are logged")
	require.True(t, racing, "racing is logged with the candidate id")
}
