package taps

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestListenerOnStoppedAfterStop: the Stopped event after Stop carries no
// error, comes once, after the ConnectionReceived calls of the
// connections received before it, and a handler set on a Listener that
// has stopped already is called at once; Err stays nil. A panic in the
// handler is contained and reported.
func TestListenerOnStoppedAfterStop(t *testing.T) {
	opt, panics := panicSink()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	events := make(chan string, 4)
	received := make(chan *Connection, 1)
	ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
		events <- "received"
		received <- c
	})
	ln.OnStopped(func(l *Listener, err error) {
		require.Same(t, ln, l)
		if err != nil {
			events <- "stopped: " + err.Error()
			return
		}
		events <- "stopped"
	})
	c := dial(t, sys, ln)
	defer c.Abort()
	require.Equal(t, "received", <-events)
	defer (<-received).Abort()
	ln.Stop()
	require.Equal(t, "stopped", <-events)
	<-ln.Done()
	require.NoError(t, ln.Err())

	late := make(chan error, 1)
	ln.OnStopped(func(_ *Listener, err error) { late <- err })
	require.NoError(t, <-late, "called at once on a stopped Listener")

	ln.OnStopped(func(*Listener, error) { panic("stopped handler") })
	pe := awaitPanic(t, panics)
	require.Contains(t, pe.Error(), "stopped handler")
	require.Empty(t, events, "called once")
}
