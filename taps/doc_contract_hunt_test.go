package taps

// Tests of claims of the public API's doc comments found false by the
// twenty-first session's doc contract audit (doc_contract_test.go has the
// earlier ones): each pins the behaviour the doc now states.

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocContractNetConnUnixAddrs: a NetConn over a Unix domain socket
// reports the socket's path as a *net.UnixAddr, as net.UnixConn does (and
// as Listener.Addr and NetListener.Addr do), not the zero *net.TCPAddr
// the doc reserves for an unknown address: before, both ends read ":0".
func TestDocContractNetConnUnixAddrs(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "s")
	ln, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(path))).Listen(ctx)
	require.NoError(t, err)
	defer func() { ln.Stop(); <-ln.Done() }()
	c, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path))).Initiate(ctx)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	client, server := c.NetConn(), s.NetConn()
	defer func() {
		require.NoError(t, client.Close())
		require.NoError(t, server.Close())
		<-c.Done()
		<-s.Done()
	}()

	want := &net.UnixAddr{Name: path, Net: "unix"}
	require.Equal(t, want, client.RemoteAddr(), "the client's peer is the listening socket's path")
	require.Equal(t, want, server.LocalAddr(), "the server's own address is the listening path")
	require.Equal(t, ln.Addr(), server.LocalAddr(), "as the Listener reports it")
	for _, a := range []net.Addr{client.LocalAddr(), server.RemoteAddr()} {
		require.Equal(t, "unix", a.Network())
		require.Equal(t, "@", a.String(), "an unbound client socket, as net.UnixConn reports it")
	}

	// what the Go standard library reports for the same sockets
	raw, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer raw.Close()
	require.Equal(t, raw.RemoteAddr(), client.RemoteAddr())
	require.Equal(t, raw.LocalAddr().String(), client.LocalAddr().String())
	rs, err := ln.Accept(ctx)
	require.NoError(t, err)
	rs.Abort()
	<-rs.Done()
}

// TestDocContractRendezvousCallsNoReadyNorEstablishmentErrorHandler:
// Preconnection.OnReady and OnEstablishmentError listed Rendezvous among
// the calls whose events they get, but a Rendezvous's Connection has no
// Ready event (RendezvousDone is its return, RFC 9622 §7.3), and a failed
// Rendezvous has no Connection to hand the handler: neither is called, as
// the docs now say; Closed comes to the Preconnection's handler.
func TestDocContractRendezvousCallsNoReadyNorEstablishmentErrorHandler(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	var ready, estErr atomic.Int32
	closed := make(chan *Connection, 2)
	handlers := func(p *Preconnection) *Preconnection {
		p.OnReady(func(*Connection) { ready.Add(1) })
		p.OnEstablishmentError(func(*Connection, error) { estErr.Add(1) })
		p.OnClosed(func(c *Connection) { closed <- c })
		return p
	}
	ports := freeTCPPorts(t, 2)
	a := handlers(NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1]))))
	b := handlers(NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])), WithRemoteEndpoint(rvRemote(ports[0]))))
	ca, cb := rendezvousPair(t, ctx, a, b, nil)
	require.Equal(t, StateEstablished, ca.State())
	require.NoError(t, ca.Close())
	require.NoError(t, cb.Close())
	// the Closed handlers are the Preconnection's, and they run after
	// every earlier event of their connection: a Ready handler would have
	// run by then
	got := map[*Connection]bool{<-closed: true, <-closed: true}
	require.True(t, got[ca] && got[cb])
	require.Zero(t, ready.Load(), "no Ready event for a Rendezvous")

	// a Rendezvous that fails (nobody at the remote; its ctx ends)
	free := freeTCPPorts(t, 2)
	c := handlers(NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(free[0])), WithRemoteEndpoint(rvRemote(free[1]))))
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	conn, err := c.Rendezvous(rctx)
	require.Nil(t, conn)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason)
	// an Initiate from the same Preconnection (to the same dead port) does
	// call the handler: it is set, and the count is that call alone
	_, err = c.Initiate(ctx)
	require.ErrorAs(t, err, &ee)
	require.Eventually(t, func() bool { return estErr.Load() >= 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(1), estErr.Load(), "the Initiate's failure only, not the Rendezvous's")
}

// TestDocContractInitiateAsyncCloseBeforeReady: InitiateAsync's doc said
// that Err is the *EstablishmentError of a connection that never became
// Ready, and Err's that it is one for a connection that ended before
// Ready; but Close before Ready ends the establishment with Closed, no
// error (the application ended it), while Abort gives the
// EstablishmentError. The docs now say so; the behaviour of both is pinned
// here, with the queued message's SendError and a later Receive's error.
// The server accepts TCP and never answers the ClientHello, so the
// connection is still Establishing when Close or Abort comes.
func TestDocContractInitiateAsyncCloseBeforeReady(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, abort := range []bool{false, true} {
		_, r := rawListener(t) // the kernel accepts; nobody speaks TLS
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithProtocols("tls"),
			WithSecurityParameters(NewSecurityParameters()))
		var ready, closed atomic.Int32
		estErr := make(chan error, 1)
		pre.OnReady(func(*Connection) { ready.Add(1) })
		pre.OnClosed(func(*Connection) { closed.Add(1) })
		pre.OnEstablishmentError(func(_ *Connection, err error) { estErr <- err })
		c, err := pre.InitiateAsync(ctx)
		require.NoError(t, err)
		sent := make(chan error, 1)
		c.SendAsync([]byte("queued"), nil, func(_ *Connection, err error) { sent <- err })
		require.Equal(t, StateEstablishing, c.State())
		if abort {
			c.Abort()
		} else {
			require.NoError(t, c.Close())
		}
		<-c.Done()
		require.Zero(t, ready.Load(), "abort %v", abort)
		_, rerr := c.Receive(ctx)
		var re *ReceiveError
		require.ErrorAs(t, rerr, &re)
		var se *SendError
		require.ErrorAs(t, <-sent, &se, "the queued message fails")
		if abort {
			var ee *EstablishmentError
			require.ErrorAs(t, c.Err(), &ee)
			require.ErrorIs(t, c.Err(), ErrAborted)
			require.ErrorIs(t, <-estErr, ErrAborted)
			require.Zero(t, closed.Load())
			require.ErrorIs(t, se, ErrAborted)
			require.ErrorIs(t, rerr, ErrAborted)
		} else {
			require.NoError(t, c.Err(), "a Close before Ready is a clean Closed")
			require.Equal(t, int32(1), closed.Load())
			require.Empty(t, estErr, "no EstablishmentError event")
			require.ErrorIs(t, se, ErrClosed)
			require.ErrorIs(t, rerr, ErrClosed)
		}
		require.Equal(t, StateClosed, c.State())
		require.ErrorIs(t, c.Close(), ErrClosed, "Close of a closed connection")
	}
}

// TestDocContractCapacityProfileCommentsNameTheDSCP: each capacity
// profile's comment names the per-hop behaviour and the DSCP its packets
// are marked with, and that is what DSCP returns and the socket carries
// (IP_TOS read back). The comments said "valued by their DSCP" and gave
// ConstantRateStreaming AF32 (28) and LowLatencyInteractive AF42 (36),
// the seed's numbers, while gotaps marks them AF31 (26) and EF (46), as
// RFC 9622 §8.1.6 recommends and DSCP's own comment said.
func TestDocContractCapacityProfileCommentsNameTheDSCP(t *testing.T) {
	consts, _ := docComments(t, "properties.go", "CapacityProfile")
	phb := map[string]uint8{"DF": 0, "LE": 1, "AF11": 10, "AF21": 18, "AF31": 26, "AF32": 28, "AF42": 36, "EF": 46}
	re := regexp.MustCompile(`\((DF|LE|AF\d\d|EF),\s+(?:DSCP )?(\d+)`)
	for _, p := range allCapacityProfiles {
		doc := consts[p.String()]
		if p == CapacityDefault {
			doc = consts["CapacityDefault"]
		}
		m := re.FindStringSubmatch(doc)
		if !assert.NotNil(t, m, "%s: the comment names no DSCP: %q", p, doc) {
			continue
		}
		n, err := strconv.Atoi(m[2])
		require.NoError(t, err)
		assert.Equal(t, phb[m[1]], uint8(n), "%s: %s is DSCP %d", p, m[1], phb[m[1]])
		assert.Equal(t, p.DSCP(), uint8(n), "%s: the comment's DSCP is DSCP()'s", p)
	}
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	for _, p := range allCapacityProfiles {
		n := p.DSCP()

		tp := NewTransportProperties()
		require.NoError(t, tp.Set(ConnCapacityProfile, p))
		c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
		require.NoError(t, err)
		s, err := ln.Accept(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, n, c.GetProperties().Socket.DSCP, "%s: the socket's DSCP", p)
		c.Abort()
		s.Abort()
		<-c.Done()
		<-s.Done()
	}
}

// TestDocContractNilFramerFailsBeforeAnyPacket: a nil framer (AddFramer,
// CloneWithFramer) is invalid input, to be refused before any packet with
// a typed error, as CloneAsync's doc promises for invalid options. Before,
// Initiate connected and failed on the framer's nil-pointer panic
// (ReasonEstablishmentFailed), Listen succeeded and its Listener aborted
// every connection it accepted without a word, and CloneAsync returned a
// clone that failed the same way.
func TestDocContractNilFramerFailsBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	raw, r := rawListener(t)
	requireInvalid := func(err error, what string) {
		t.Helper()
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee, what)
		require.Equal(t, ReasonInvalidConfiguration, ee.Reason, what)
		require.ErrorIs(t, err, os.ErrInvalid, what)
	}
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	pre.AddFramer(framers.NewLengthPrefix())
	pre.AddFramer(nil)
	c, err := pre.Initiate(ctx)
	require.Nil(t, c)
	requireInvalid(err, "Initiate")
	c, err = pre.InitiateAsync(ctx)
	require.Nil(t, c)
	requireInvalid(err, "InitiateAsync")
	c, err = pre.InitiateWithSend(ctx, []byte("x"), nil)
	require.Nil(t, c)
	requireInvalid(err, "InitiateWithSend")
	ln, err := pre.Listen(ctx)
	require.Nil(t, ln)
	requireInvalid(err, "Listen")
	_, err = Dialer(pre)(ctx, "tcp", raw.Addr().String())
	requireInvalid(err, "Dialer")
	ports := freeTCPPorts(t, 1)
	rv := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(r))
	rv.AddFramer(nil)
	c, err = rv.Rendezvous(ctx)
	require.Nil(t, c)
	requireInvalid(err, "Rendezvous")
	// nothing reached the raw listener
	require.NoError(t, raw.(*net.TCPListener).SetDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = raw.Accept()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "no connection was made")

	tl := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, tl)
	defer func() { c.Abort(); s.Abort(); <-c.Done(); <-s.Done() }()
	for _, async := range []bool{false, true} {
		var clone *Connection
		if async {
			clone, err = c.CloneAsync(ctx, CloneWithFramer(framers.NewLengthPrefix(), nil))
		} else {
			clone, err = c.Clone(ctx, CloneWithFramer(nil))
		}
		require.Nil(t, clone, "async %v", async)
		var ce *CloneError
		require.ErrorAs(t, err, &ce, "async %v", async)
		require.Equal(t, ReasonInvalidConfiguration, ce.Reason)
		require.ErrorIs(t, err, os.ErrInvalid)
	}
	acctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = tl.Accept(acctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "no clone reached the Listener")
	require.Equal(t, StateEstablished, c.State(), "the original is untouched")
}

// TestDocContractSpecialOfAnotherProperty: ErrInvalidPropertyType's doc
// counted "a Special the property does not accept" among the wrong types,
// but a Special other than the one a property takes (Infinite for
// connTimeout, which takes Disabled) is ErrInvalidPropertyValue, as the
// rest of the package and its tests have it; only a Special for a
// property that takes none (connPriority) is a wrong type. The docs now
// say so.
func TestDocContractSpecialOfAnotherProperty(t *testing.T) {
	for _, c := range []struct {
		p    Property
		v    Special
		want error
	}{
		{ConnTimeout, Infinite, ErrInvalidPropertyValue},
		{MsgLifetime, Disabled, ErrInvalidPropertyValue},
		{MinSendRate, Disabled, ErrInvalidPropertyValue},
		{RecvChecksumLen, NotApplicable, ErrInvalidPropertyValue},
		{ConnPriority, Unlimited, ErrInvalidPropertyType},
		{MsgPriority, Infinite, ErrInvalidPropertyType},
	} {
		tp := NewTransportProperties()
		err := tp.Set(c.p, c.v)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe, "%s = %s", c.p, c.v)
		require.ErrorIs(t, err, c.want, "%s = %s", c.p, c.v)
		require.False(t, tp.IsSet(c.p), "%s: nothing changed", c.p)
		if c.p.Kind() == KindMessage {
			require.ErrorIs(t, NewMessageContext().Set(c.p, c.v), c.want, "MessageContext.Set(%s, %s)", c.p, c.v)
		}
	}
}

// TestDocContractNilOptionsAreIgnored: a nil option (a conditional
// option left unset, say) panicked in NewPreconnection, NewSystem,
// Receive, Clone and CloneAsync (a nil function called); bad input must
// never panic, and a nil option asks for nothing: it is ignored.
func TestDocContractNilOptionsAreIgnored(t *testing.T) {
	sys := newTestSystem(t, nil, WithHandlerPanic(nil))
	ctx := testCtx(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	pre := NewPreconnection(nil, WithSystem(sys), nil, WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("one"), nil))
	m, err := s.Receive(ctx, nil, MaxLength(2), nil)
	require.NoError(t, err)
	require.Equal(t, "on", string(m.Data), "the other options still apply")
	m, err = s.Receive(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, "e", string(m.Data))

	clone, err := c.Clone(ctx, nil)
	require.NoError(t, err)
	cs, err := ln.Accept(ctx)
	require.NoError(t, err)
	clone2, err := c.CloneAsync(ctx, nil, CloneWithFramer(framers.NewLengthPrefix()))
	require.NoError(t, err)
	cs2, err := ln.Accept(ctx)
	require.NoError(t, err)
	for _, x := range []*Connection{c, s, clone, cs, clone2, cs2} {
		x.Abort()
		<-x.Done()
	}
}
