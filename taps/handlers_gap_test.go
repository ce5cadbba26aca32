package taps

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// awaitConn waits for a handler's report of c, failing after 5 s.
func awaitConn(t *testing.T, ch <-chan *Connection, c *Connection, what string) {
	t.Helper()
	select {
	case got := <-ch:
		require.Same(t, c, got, what)
	case <-time.After(5 * time.Second):
		t.Fatal(what)
	}
}

// A Closed handler set on a Connection already Closed is called once at
// once, also when it replaces the Preconnection's handler, which had the
// event (as OnReady after Ready); another handler set afterwards calls
// nothing again.
func TestOnClosedAfterClosedReplacingThePreconnectionsIsCalled(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	preClosed := make(chan *Connection, 2)
	pre.OnClosed(func(c *Connection) { preClosed <- c })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	awaitConn(t, preClosed, c, "no Closed for the Preconnection's handler")
	requireDone(t, c)
	connClosed := make(chan *Connection, 2)
	c.OnClosed(func(c *Connection) { connClosed <- c })
	awaitConn(t, connClosed, c, "the Closed handler set after Closed did not get it")
	c.OnSoftError(func(*Connection, error) {})     // another handler set: no second Closed
	c.OnConnectionError(func(*Connection, error) { // not this connection's terminal event
		t.Error("ConnectionError handler called after Closed")
	})
	c.OnReady(func(*Connection) { t.Error("Ready handler called after the terminal event") })
	// a handler set after the calls above runs after them (one event goroutine)
	last := make(chan *Connection, 1)
	c.OnClosed(func(c *Connection) { last <- c })
	awaitConn(t, last, c, "the second Closed handler set after Closed did not get it")
	require.Len(t, connClosed, 0, "Closed once per handler")
	require.Len(t, preClosed, 0, "Closed once per handler")
}

// A ConnectionError handler set on a Connection that already ended with a
// ConnectionError is called once at once, also when it replaces the
// Preconnection's handler, which had the event.
func TestOnConnectionErrorAfterItReplacingThePreconnectionsIsCalled(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	preErr := make(chan error, 2)
	pre.OnConnectionError(func(_ *Connection, err error) { preErr <- err })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	srv, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	srv.Abort() // a reset: the client's ConnectionError
	var ce *ConnectionError
	select {
	case err := <-preErr:
		require.ErrorAs(t, err, &ce)
	case <-time.After(5 * time.Second):
		t.Fatal("no ConnectionError for the Preconnection's handler")
	}
	requireDone(t, c)
	connErr := make(chan error, 2)
	c.OnConnectionError(func(_ *Connection, err error) { connErr <- err })
	select {
	case err := <-connErr:
		require.ErrorAs(t, err, &ce)
	case <-time.After(5 * time.Second):
		t.Fatal("the ConnectionError handler set after the event did not get it")
	}
	c.OnClosed(func(*Connection) { t.Error("Closed handler called after a ConnectionError") })
	last := make(chan error, 1)
	c.OnConnectionError(func(_ *Connection, err error) { last <- err })
	select {
	case err := <-last:
		require.ErrorAs(t, err, &ce)
	case <-time.After(5 * time.Second):
		t.Fatal("the second ConnectionError handler set after the event did not get it")
	}
	require.Len(t, connErr, 0, "ConnectionError once per handler")
	require.Len(t, preErr, 0, "ConnectionError once per handler")
}

// An EstablishmentError handler set on a Connection (InitiateAsync) after
// the event is called once at once, also when it replaces the
// Preconnection's handler, which had the event.
func TestOnEstablishmentErrorAfterItReplacingThePreconnectionsIsCalled(t *testing.T) {
	sys := newTestSystem(t)
	pre := refusedPreconnection(t, sys)
	preErr := make(chan error, 2)
	pre.OnEstablishmentError(func(_ *Connection, err error) { preErr <- err })
	c, err := pre.InitiateAsync(testCtx(t))
	require.NoError(t, err)
	var ee *EstablishmentError
	select {
	case err := <-preErr:
		require.ErrorAs(t, err, &ee)
	case <-time.After(5 * time.Second):
		t.Fatal("no EstablishmentError for the Preconnection's handler")
	}
	requireDone(t, c)
	connErr := make(chan error, 2)
	c.OnEstablishmentError(func(_ *Connection, err error) { connErr <- err })
	select {
	case err := <-connErr:
		require.ErrorAs(t, err, &ee)
	case <-time.After(5 * time.Second):
		t.Fatal("the EstablishmentError handler set after the event did not get it")
	}
	c.OnSoftError(func(*Connection, error) {}) // another handler set: no second EstablishmentError
	last := make(chan error, 1)
	c.OnEstablishmentError(func(_ *Connection, err error) { last <- err })
	select {
	case err := <-last:
		require.ErrorAs(t, err, &ee)
	case <-time.After(5 * time.Second):
		t.Fatal("the second EstablishmentError handler set after the event did not get it")
	}
	require.Len(t, connErr, 0, "EstablishmentError once per handler")
	require.Len(t, preErr, 0, "EstablishmentError once per handler")
}
