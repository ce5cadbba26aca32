package taps

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

func directionProps(t *testing.T, d CommunicationDirection, profile ...Profile) *TransportProperties {
	t.Helper()
	tp := NewTransportProperties(profile...)
	require.NoError(t, tp.Set(Direction, d))
	return tp
}

// rawPeerWith initiates to a raw TCP peer with tp.
func rawPeerWith(t *testing.T, sys *System, tp *TransportProperties) (*Connection, net.Conn) {
	t.Helper()
	ln, r := rawListener(t)
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(r)).Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	return c, peer
}

func requireSendOnly(t *testing.T, c *Connection) {
	t.Helper()
	_, err := c.Receive(testCtx(t))
	var re *ReceiveError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, ErrSendOnly)
	require.ErrorIs(t, err, ErrNotAllowed)
	async := make(chan error, 1)
	c.ReceiveAsync(func(_ *Connection, _ *Message, err error) { async <- err })
	require.ErrorIs(t, <-async, ErrSendOnly)
	p := c.GetProperties()
	require.False(t, p.CanReceive)
	require.True(t, p.CanSend)
	d, _ := p.Get(Direction)
	require.Equal(t, UnidirectionalSend, d)
	if n, ok := p.Get(RecvMsgMaxLen); ok {
		require.Equal(t, int64(0), n, "nothing can be received")
	}
}

func requireReceiveOnly(t *testing.T, c *Connection) {
	t.Helper()
	err := c.Send(testCtx(t), []byte("never written"), nil)
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrReceiveOnly)
	async := make(chan error, 1)
	c.SendAsync([]byte("never written"), nil, func(_ *Connection, err error) { async <- err })
	require.ErrorIs(t, <-async, ErrReceiveOnly)
	err = c.SendPartial(testCtx(t), []byte("never"), NewMessageContext(), false)
	require.ErrorIs(t, err, ErrReceiveOnly)
	p := c.GetProperties()
	require.False(t, p.CanSend)
	require.True(t, p.CanReceive)
	d, _ := p.Get(Direction)
	require.Equal(t, UnidirectionalReceive, d)
	if n, ok := p.Get(SendMsgMaxLen); ok {
		require.Equal(t, int64(0), n, "nothing can be sent")
	}
}

// TestReceiveOnlyTCPShutsDownWriting: the peer reads the end of stream at
// once (shutdown(SHUT_WR)), nothing before it; Sends fail; data still
// comes in, and the peer's end closes the connection.
func TestReceiveOnlyTCPShutsDownWriting(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, peer := rawPeerWith(t, sys, directionProps(t, UnidirectionalReceive))
	requireReceiveOnly(t, c)
	b, err := io.ReadAll(peer)
	require.NoError(t, err, "the peer reads this side's end of stream")
	require.Empty(t, b, "nothing was written")
	_, err = peer.Write([]byte("to a receiver"))
	require.NoError(t, err)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "to a receiver", string(m.Data))
	require.NoError(t, peer.(*net.TCPConn).CloseWrite())
	m, err = c.Receive(ctx) // the end of the stream-wide message
	require.NoError(t, err)
	require.True(t, m.Context.IsFinal())
	_, err = c.Receive(ctx)
	require.ErrorIs(t, err, ErrClosed, "the peer's end of stream")
	<-c.Done() // both sides ended their streams: Closed
	require.NoError(t, c.Err())
}

func TestSendOnlyTCP(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, peer := rawPeerWith(t, sys, directionProps(t, UnidirectionalSend))
	requireSendOnly(t, c)
	require.NoError(t, c.Send(ctx, []byte("from a sender"), nil))
	require.NoError(t, c.Close())
	b, err := io.ReadAll(peer)
	require.NoError(t, err)
	require.Equal(t, "from a sender", string(b))
	<-c.Done()
	require.NoError(t, c.Err())
}

// TestSendOnlyUnixShutsDownReading: shutdown(SHUT_RD) on a Unix socket
// makes the peer's writes fail.
func TestSendOnlyUnixShutsDownReading(t *testing.T) {
	sys := newTestSystem(t)
	path := filepath.Join(t.TempDir(), "uni.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(directionProps(t, UnidirectionalSend)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path))).Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	requireSendOnly(t, c)
	_, err = peer.Write([]byte("to a sender"))
	require.ErrorIs(t, err, syscall.EPIPE, "this side shut its socket down for reading")
	require.NoError(t, c.Send(testCtx(t), []byte("from a sender"), nil))
	b := make([]byte, 32)
	n, err := peer.Read(b)
	require.NoError(t, err)
	require.Equal(t, "from a sender", string(b[:n]))
}

// TestSendOnlyPeerEndDoesNotReestablish: under a re-establishment policy,
// the end of the receive side of a send-only connection (its own
// SHUT_RD, the peer's FIN) is no loss of the transport.
func TestSendOnlyPeerEndDoesNotReestablish(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln, r := rawListener(t)
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(directionProps(t, UnidirectionalSend)),
		WithRemoteEndpoint(r), WithReestablishment(ReestablishPolicy{})).Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	reest := make(chan error, 8)
	c.OnReestablishing(func(_ *Connection, err error, _ int) { reest <- err })
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	require.NoError(t, peer.(*net.TCPConn).CloseWrite())
	b := make([]byte, 4)
	for _, msg := range []string{"one", "two"} {
		require.NoError(t, c.Send(ctx, []byte(msg), nil))
		n, err := io.ReadFull(peer, b[:len(msg)])
		require.NoError(t, err)
		require.Equal(t, msg, string(b[:n]))
	}
	require.Equal(t, StateEstablished, c.State())
	select {
	case err := <-reest:
		t.Fatalf("re-established after the receive side ended: %v", err)
	default:
	}
}

func TestDirectionOnUDPIsEnforcedAtTheAPI(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	port := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	dial := func(d CommunicationDirection) *Connection {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(directionProps(t, d, UnreliableDatagram)),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port))).Initiate(ctx)
		require.NoError(t, err)
		t.Cleanup(c.Abort)
		require.Equal(t, "udp", c.GetProperties().Stack)
		return c
	}
	requireReceiveOnly(t, dial(UnidirectionalReceive))
	s := dial(UnidirectionalSend)
	requireSendOnly(t, s)
	require.NoError(t, s.Send(ctx, []byte("datagram"), nil))
	b := make([]byte, 16)
	n, _, err := srv.ReadFromUDP(b)
	require.NoError(t, err)
	require.Equal(t, "datagram", string(b[:n]))
}

// TestUnidirectionalListenerAndInitiator: a Listener's direction is its
// received connections' direction; gotaps on both sides, each direction
// on TCP, TLS and QUIC. The receive-only side ends its stream at once;
// the send-only side sends, then closes, and both reach Closed.
func TestUnidirectionalListenerAndInitiator(t *testing.T) {
	pki := newTestPKI(t)
	for _, stack := range []string{"tcp", "tls", "quic"} {
		for _, listenerSends := range []bool{true, false} {
			name := stack + "/listener-receives"
			lnDir, initDir := UnidirectionalReceive, UnidirectionalSend
			if listenerSends {
				name = stack + "/listener-sends"
				lnDir, initDir = UnidirectionalSend, UnidirectionalReceive
			}
			t.Run(name, func(t *testing.T) {
				ctx := testCtx(t)
				ln, cli := directionalPair(t, ctx, pki, stack, lnDir, initDir)
				c, err := cli.Initiate(ctx)
				require.NoError(t, err)
				t.Cleanup(c.Abort)
				if !listenerSends {
					// the listener learns of a QUIC stream from its first data
					require.NoError(t, c.Send(ctx, []byte("first"), nil))
				}
				s, err := ln.Accept(ctx)
				require.NoError(t, err)
				t.Cleanup(s.Abort)
				sender, receiver := c, s
				if listenerSends {
					sender, receiver = s, c
				}
				requireSendOnly(t, sender)
				requireReceiveOnly(t, receiver)
				want := []string{"one", "two", "three"}
				if !listenerSends {
					want = append([]string{"first"}, want...)
				}
				for _, m := range want[len(want)-3:] {
					require.NoError(t, sender.Send(ctx, []byte(m), nil))
				}
				require.NoError(t, sender.Close())
				for _, w := range want {
					m, err := receiver.Receive(ctx)
					require.NoError(t, err)
					require.Equal(t, w, string(m.Data))
				}
				_, err = receiver.Receive(ctx)
				require.ErrorIs(t, err, ErrClosed, "the sender's end of stream")
				<-sender.Done()
				<-receiver.Done()
				require.NoError(t, sender.Err())
				require.NoError(t, receiver.Err())
			})
		}
	}
}

// TestSendOnlyQUICOpensUnidirectionalStreams: a UnidirectionalSend
// connection over QUIC, and its Clone, each send on a QUIC unidirectional
// stream: a Bidirectional Listener's connections for them only receive
// (only the opener of a unidirectional stream sends on it), and the
// sender's end of stream closes them.
func TestSendOnlyQUICOpensUnidirectionalStreams(t *testing.T) {
	ctx := testCtx(t)
	ln, cli := sendOnlyQUIC(t, ctx)
	c, err := cli.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	requireSendOnly(t, c)
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	t.Cleanup(clone.Abort)
	requireSendOnly(t, clone)

	// both send before either ends: the session closes with its last stream
	want := map[*Connection][]string{c: {"one", "two"}, clone: {"clone one", "clone two"}}
	for _, sender := range []*Connection{c, clone} {
		for _, m := range want[sender] {
			require.NoError(t, sender.Send(ctx, []byte(m), nil))
		}
	}
	var received []*Connection
	for range 2 {
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		t.Cleanup(s.Abort)
		requireReceiveOnly(t, s)
		require.ErrorIs(t, s.Send(ctx, []byte("never"), nil), ErrNotAllowed)
		received = append(received, s)
	}
	require.NoError(t, c.Close())
	require.NoError(t, clone.Close())
	got := map[string]bool{}
	for _, s := range received {
		var msgs []string
		for {
			m, err := s.Receive(ctx)
			if errors.Is(err, ErrClosed) { // the sender's end of stream
				break
			}
			require.NoError(t, err)
			msgs = append(msgs, string(m.Data))
		}
		got[strings.Join(msgs, ",")] = true
		<-s.Done()
		require.NoError(t, s.Err())
	}
	require.Equal(t, map[string]bool{"one,two": true, "clone one,clone two": true}, got)
	<-c.Done()
	<-clone.Done()
	require.NoError(t, c.Err())
	require.NoError(t, clone.Err())
}

// directionalPair is a Listener with direction lnDir and a client
// Preconnection with direction initDir to it, over stack (tcp, tls or
// quic; secured with pki but for tcp), both with a length-prefix framer.
func directionalPair(t *testing.T, ctx context.Context, pki *testPKI, stack string, lnDir, initDir CommunicationDirection) (*Listener, *Preconnection) {
	t.Helper()
	opts := []PreconnectionOption{WithSystem(newTestSystem(t)), WithProtocols(stack)}
	srvSec, cliSec := (*SecurityParameters)(nil), (*SecurityParameters)(nil)
	if stack != "tcp" {
		srvSec, cliSec = pki.serverSec(), pki.clientSec()
	}
	srv := NewPreconnection(append(opts, WithSecurityParameters(srvSec), WithTransportProperties(directionProps(t, lnDir)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))...)
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	cli := NewPreconnection(append(opts, WithSecurityParameters(cliSec), WithTransportProperties(directionProps(t, initDir)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))...)
	cli.AddFramer(framers.NewLengthPrefix())
	return ln, cli
}

// sendOnlyQUIC is a Bidirectional QUIC Listener and a UnidirectionalSend
// client Preconnection to it.
func sendOnlyQUIC(t *testing.T, ctx context.Context) (*Listener, *Preconnection) {
	t.Helper()
	return directionalPair(t, ctx, newTestPKI(t), "quic", Bidirectional, UnidirectionalSend)
}
