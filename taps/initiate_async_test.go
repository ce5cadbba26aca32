package taps

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// InitiateAsync returns the Connection before it is Ready (RFC 9622 §7.1):
// a Send made at once is queued and delivered once Ready, a Receive waits
// for the reply, and the Ready event reaches the Preconnection's handler,
// or one set on the Connection after the call instead of it.
func TestInitiateAsyncReturnsAtOnceAndQueuesSends(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	for _, own := range []bool{false, true} {
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
		pre.AddFramer(framers.NewLengthPrefix())
		preReady := make(chan *Connection, 1)
		pre.OnReady(func(c *Connection) { preReady <- c })
		c, err := pre.InitiateAsync(testCtx(t))
		require.NoError(t, err)
		require.Contains(t, []ConnectionState{StateEstablishing, StateEstablished}, c.State())
		connReady := make(chan *Connection, 2)
		setBeforeReady := false
		if own {
			c.OnReady(func(c *Connection) { connReady <- c })
			// still Establishing once the handler is set: Ready, to come,
			// goes to it alone (else the Preconnection's may have had it
			// first, and this one gets it late, at once)
			setBeforeReady = c.State() == StateEstablishing
		} else {
			connReady = preReady
		}
		sent := make(chan error, 1)
		c.SendAsync([]byte("queued before Ready"), nil, func(_ *Connection, err error) { sent <- err })
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, "queued before Ready", string(m.Data))
		require.NoError(t, <-sent)
		select {
		case got := <-connReady:
			require.Same(t, c, got)
		case <-time.After(5 * time.Second):
			t.Fatalf("no Ready (handler set on the Connection: %v)", own)
		}
		require.Equal(t, StateEstablished, c.State())
		require.NoError(t, c.Close())
		requireDone(t, c)
		require.NoError(t, c.Err())
		require.Len(t, connReady, 0, "Ready once")
		if own && setBeforeReady {
			require.Len(t, preReady, 0, "the Connection's handler replaced the Preconnection's")
		}
	}
}

// A handler set on a Connection already Ready is called once at once, also
// when it replaces the Preconnection's handler, which had the event.
func TestOnReadyAfterReadyReplacingThePreconnectionsIsCalled(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	preReady := make(chan *Connection, 2)
	pre.OnReady(func(c *Connection) { preReady <- c })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	select {
	case got := <-preReady:
		require.Same(t, c, got)
	case <-time.After(5 * time.Second):
		t.Fatal("no Ready for the Preconnection's handler")
	}
	connReady := make(chan *Connection, 2)
	c.OnReady(func(c *Connection) { connReady <- c })
	select {
	case got := <-connReady:
		require.Same(t, c, got)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler set after Ready did not get it")
	}
	c.OnClosed(func(*Connection) {}) // another handler set: no second Ready
	require.NoError(t, c.Close())
	requireDone(t, c)
	require.Len(t, connReady, 0, "Ready once")
	require.Len(t, preReady, 0, "Ready once")
}

// A failed InitiateAsync is an EstablishmentError event listing the
// attempts (also to a handler set on the Connection after the call), the
// queued sends fail, Receive returns it, and Err is it once Done.
func TestInitiateAsyncEstablishmentErrorIsAnEvent(t *testing.T) {
	sys := newTestSystem(t)
	pre := refusedPreconnection(t, sys)
	c, err := pre.InitiateAsync(testCtx(t))
	require.NoError(t, err, "the failure is an event, not InitiateAsync's error")
	sent := make(chan error, 1)
	c.SendAsync([]byte("never sent"), nil, func(_ *Connection, err error) { sent <- err })
	connErr := make(chan error, 1)
	c.OnEstablishmentError(func(_ *Connection, err error) { connErr <- err })
	var ee *EstablishmentError
	select {
	case err := <-connErr:
		require.ErrorAs(t, err, &ee)
		require.NotEmpty(t, ee.Attempts, "%v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no EstablishmentError event")
	}
	select {
	case err := <-sent:
		var se *SendError
		require.ErrorAs(t, err, &se, "a queued send fails with the establishment")
	case <-time.After(5 * time.Second):
		t.Fatal("the queued send has no event")
	}
	_, err = c.Receive(testCtx(t))
	require.Error(t, err)
	requireDone(t, c)
	require.ErrorAs(t, c.Err(), &ee, "Err is the EstablishmentError: %v", c.Err())
	require.Equal(t, StateClosed, c.State())
}

// The ctx given to InitiateAsync bounds the establishment: when it ends
// first, the attempts stop and the EstablishmentError has ReasonTimeout;
// once Ready, its end changes nothing.
func TestInitiateAsyncCtxBoundsTheEstablishmentOnly(t *testing.T) {
	sys := newTestSystem(t)
	// a listener whose accept queue is full: the next SYN gets no answer
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(deadListener(t))))
	ctx, cancel := context.WithCancel(context.Background())
	c, err := pre.InitiateAsync(ctx)
	require.NoError(t, err)
	estErr := make(chan error, 1)
	c.OnEstablishmentError(func(_ *Connection, err error) { estErr <- err })
	require.Equal(t, StateEstablishing, c.State())
	cancel()
	select {
	case err := <-estErr:
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ReasonTimeout, ee.Reason, "%v", err)
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("ctx's end did not stop the establishment")
	}
	requireDone(t, c)

	ln := listenLoopback(t, sys)
	ctx2, cancel2 := context.WithCancel(context.Background())
	c2, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).InitiateAsync(ctx2)
	require.NoError(t, err)
	s2, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	ready := make(chan struct{})
	c2.OnReady(func(*Connection) { close(ready) })
	<-ready
	cancel2()
	require.NoError(t, c2.Send(testCtx(t), []byte("after ctx"), nil))
	m, err := s2.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "after ctx", string(m.Data))
	require.Equal(t, StateEstablished, c2.State(), "ctx ended after Ready: no effect")
	require.NoError(t, c2.Close())
	requireDone(t, c2)
}

// Invalid properties fail InitiateAsync itself, before anything starts.
func TestInitiateAsyncInvalidConfigurationFailsAtOnce(t *testing.T) {
	sys := newTestSystem(t)
	c, err := NewPreconnection(WithSystem(sys)).InitiateAsync(testCtx(t)) // no remote endpoint
	require.Nil(t, c)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonInvalidConfiguration, ee.Reason, "%v", err)
}

// CloneAsync returns the clone at once (RFC 9622 §7.4); a Send made before
// it is Ready waits for it, and a clone whose dial fails ends with an
// EstablishmentError event (Err is it), the original untouched.
func TestCloneAsync(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	clone, err := c.CloneAsync(testCtx(t))
	require.NoError(t, err)
	require.Contains(t, []ConnectionState{StateEstablishing, StateEstablished}, clone.State())
	ready := make(chan struct{})
	clone.OnReady(func(*Connection) { close(ready) })
	require.NoError(t, clone.Send(testCtx(t), []byte("clone, queued"), nil))
	m, err := clone.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "clone, queued", string(m.Data))
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("no Ready for the clone")
	}
	members, err := c.GroupedConnections(testCtx(t))
	require.NoError(t, err)
	require.Len(t, members, 2, "the clone is in the group")

	// the listener gone, a TCP clone's dial is refused: an event now
	ln.Stop()
	<-ln.Done()
	failing, err := c.CloneAsync(testCtx(t))
	require.NoError(t, err, "the dial's failure is the clone's event")
	estErr := make(chan error, 1)
	failing.OnEstablishmentError(func(_ *Connection, err error) { estErr <- err })
	select {
	case err := <-estErr:
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
	case <-time.After(5 * time.Second):
		t.Fatal("no EstablishmentError for the clone")
	}
	requireDone(t, failing)
	var ee *EstablishmentError
	require.ErrorAs(t, failing.Err(), &ee)
	require.Equal(t, StateEstablished, c.State(), "the original goes on")
	roundTrip(t, c, "original")
}

// refusedPreconnection is a TCP Preconnection to a loopback port nothing
// listens on: its attempt is refused.
func refusedPreconnection(t *testing.T, sys *System) *Preconnection {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens: refused
	return NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(uint16(port))))
}
