package taps

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// panicSink collects what WithHandlerPanic reports.
func panicSink() (SystemOption, <-chan *PanicError) {
	ch := make(chan *PanicError, 16)
	return WithHandlerPanic(func(pe *PanicError) { ch <- pe }), ch
}

// awaitPanic waits for the next reported panic.
func awaitPanic(t *testing.T, ch <-chan *PanicError) *PanicError {
	t.Helper()
	return epAwait(t, testCtx(t), ch, "handler panic was reported")
}

// requireStillWorks checks that the System still carries traffic: a new
// connection to ln gets a message through.
func requireStillWorks(t *testing.T, sys *System, ln *Listener) {
	t.Helper()
	c, s := dialAccept(t, sys, ln)
	require.NoError(t, c.Send(testCtx(t), []byte("still fine"), nil))
	m, err := s.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "still fine", string(m.Data))
	for _, x := range []*Connection{c, s} {
		x.Abort()
		<-x.Done()
	}
}

func requirePanic(t *testing.T, pe *PanicError, value any, where string, conn uint64) {
	t.Helper()
	require.Equal(t, value, pe.Value)
	require.NotEmpty(t, pe.Stack, "the stack of the panic")
	require.Contains(t, pe.Where, where)
	require.Equal(t, conn, pe.ConnectionID)
}

// A panic in the Closed handler cannot end its connection (it has ended):
// it goes to the WithHandlerPanic function.
func TestHandlerPanicInOnClosedIsReported(t *testing.T) {
	opt, panics := panicSink()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	c.OnClosed(func(*Connection) { panic("closed handler bug") })
	c.Close()
	s.Close()
	requirePanic(t, awaitPanic(t, panics), "closed handler bug", "Closed", c.ID())
	<-c.Done()
	<-s.Done()
	require.NoError(t, c.Err(), "the connection had closed cleanly")
	requireStillWorks(t, sys, ln)
}

// A panic in the ConnectionError handler (after Abort) is reported too.
func TestHandlerPanicInOnConnectionErrorIsReported(t *testing.T) {
	opt, panics := panicSink()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	c.OnConnectionError(func(*Connection, error) { panic("connection error handler bug") })
	c.Abort()
	requirePanic(t, awaitPanic(t, panics), "connection error handler bug", "ConnectionError", c.ID())
	<-c.Done()
	require.ErrorIs(t, c.Err(), ErrAborted, "the abort stays the connection's error")
	s.Abort()
	<-s.Done()
	requireStillWorks(t, sys, ln)
}

// Handlers of SendAsync and ReceiveAsync called after the connection ended
// are reported the same way.
func TestHandlerPanicInAsyncHandlersAfterTheEndIsReported(t *testing.T) {
	opt, panics := panicSink()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	c.Abort()
	<-c.Done()
	c.SendAsync([]byte("x"), nil, func(*Connection, error) { panic("sent handler bug") })
	requirePanic(t, awaitPanic(t, panics), "sent handler bug", "Send", c.ID())
	c.ReceiveAsync(func(*Connection, *Message, error) { panic("received handler bug") })
	requirePanic(t, awaitPanic(t, panics), "received handler bug", "Receive", c.ID())
	s.Abort()
	<-s.Done()
	requireStillWorks(t, sys, ln)
}

// A panic that ends its connection (the handler ran while it was alive) is
// reported too, and is the connection's error.
func TestHandlerPanicThatEndsTheConnectionIsAlsoReported(t *testing.T) {
	opt, panics := panicSink()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	c.ReceiveAsync(func(*Connection, *Message, error) { panic("live handler bug") })
	require.NoError(t, s.Send(testCtx(t), []byte("boom"), nil))
	pe := awaitPanic(t, panics)
	requirePanic(t, pe, "live handler bug", "Receive", c.ID())
	<-c.Done()
	var got *PanicError
	require.ErrorAs(t, c.Err(), &got)
	require.Same(t, pe, got)
	s.Abort()
	<-s.Done()
	requireStillWorks(t, sys, ln)
}

// A ConnectionReceived handler's panic is reported with the received
// connection's id.
func TestHandlerPanicInConnectionReceivedIsReported(t *testing.T) {
	opt, panics := panicSink()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	got := make(chan *Connection, 1)
	release := make(chan struct{})
	ln.OnConnectionReceived(func(_ *Listener, s *Connection) {
		got <- s
		<-release // once the client has its connection (its dial would see a reset)
		panic("connection received handler bug")
	})
	c := dial(t, sys, ln)
	s := <-got
	close(release)
	requirePanic(t, awaitPanic(t, panics), "connection received handler bug", "ConnectionReceived", s.ID())
	<-s.Done()
	c.Abort()
	<-c.Done()
	ln.OnConnectionReceived(nil)
	requireStillWorks(t, sys, ln)
}

// errorRecords is a slog handler sending every Error record on a channel.
type errorRecords chan slog.Record

func (h errorRecords) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h errorRecords) Handle(_ context.Context, r slog.Record) error {
	h <- r.Clone()
	return nil
}
func (h errorRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errorRecords) WithGroup(string) slog.Handler      { return h }

func (h errorRecords) await(t *testing.T) (slog.Record, map[string]string) {
	t.Helper()
	select {
	case r := <-h:
		a := map[string]string{}
		r.Attrs(func(x slog.Attr) bool { a[x.Key] = x.Value.String(); return true })
		return r, a
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was logged at Error")
		return slog.Record{}, nil
	}
}

// Without WithHandlerPanic a panic is logged at Error through the System's
// logger, with the connection, the handler, the value and the stack.
func TestHandlerPanicIsLoggedAtErrorByDefault(t *testing.T) {
	logs := make(errorRecords, 16)
	sys := newTestSystem(t, WithLogger(slog.New(logs)))
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	c.OnConnectionError(func(*Connection, error) { panic("logged handler bug") })
	c.Abort()
	r, a := logs.await(t)
	require.Equal(t, slog.LevelError, r.Level)
	require.Contains(t, r.Message, "panic")
	require.Equal(t, "logged handler bug", a["panic"])
	require.Contains(t, a["handler"], "ConnectionError")
	require.NotEmpty(t, a["stack"])
	require.Equal(t, c.ID(), parseID(t, a["connection"]))
	<-c.Done()
	s.Abort()
	<-s.Done()
	requireStillWorks(t, sys, ln)
}

// A panic in the WithHandlerPanic function itself is logged and
// swallowed; later panics are still reported.
func TestHandlerPanicReportFunctionPanicIsSwallowed(t *testing.T) {
	logs := make(errorRecords, 16)
	reported := make(chan *PanicError, 4)
	first := true
	sys := newTestSystem(t, WithLogger(slog.New(logs)), WithHandlerPanic(func(pe *PanicError) {
		if first { // calls are serialized
			first = false
			panic("report function bug")
		}
		reported <- pe
	}))
	ln := listenLoopback(t, sys)
	for i, want := range []string{"first bug", "second bug"} {
		c, s := dialAccept(t, sys, ln)
		c.OnConnectionError(func(*Connection, error) { panic(want) })
		c.Abort()
		if i == 0 {
			r, a := logs.await(t)
			require.Equal(t, slog.LevelError, r.Level)
			require.Contains(t, a["panic"], "report function bug")
		} else {
			requirePanic(t, awaitPanic(t, reported), want, "ConnectionError", c.ID())
		}
		<-c.Done()
		s.Abort()
		<-s.Done()
	}
	requireStillWorks(t, sys, ln)
}

// A contained handler panic is a trace record of kind "panic".
func TestHandlerPanicIsTraced(t *testing.T) {
	recs := make(chan *TraceRecord, 1024)
	opt, panics := panicSink()
	sys := newTestSystem(t, opt, WithTracer(func(r *TraceRecord) {
		if r.Kind == "panic" {
			recs <- r
		}
	}))
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	c.OnConnectionError(func(*Connection, error) { panic("traced handler bug") })
	c.Abort()
	awaitPanic(t, panics)
	var r *TraceRecord
	select {
	case r = <-recs:
	case <-testCtx(t).Done():
		t.Fatal("no panic trace record")
	}
	require.Equal(t, c.ID(), r.ConnectionID)
	require.Contains(t, r.Event, "ConnectionError")
	require.Contains(t, r.Error, "traced handler bug")
	<-c.Done()
	s.Abort()
	<-s.Done()
}

func parseID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err, "connection id %q", s)
	return id
}
