package taps

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// The peer's end of stream half-closes a connection (RFC 9623 §10.1: FIN
// is not Closed): the messages before it are delivered, the last one
// final; then receiving has ended but sending goes on, until this side
// ends its stream too (Close, or a Final message).

// halfClosedServer accepts the connection of a peer that sent request and
// ended its sending side, and checks that the connection half-closed.
func halfClosedServer(t *testing.T, ln *Listener, seen <-chan struct{}, request string) *Connection {
	t.Helper()
	ctx := testCtx(t)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	select {
	case <-seen:
	case <-ctx.Done():
		t.Fatal("the peer's end of stream was never noticed")
	}
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, request, string(m.Data))
	require.True(t, m.Context.IsFinal(), "the last message before the peer's end of stream is final")
	_, err = s.Receive(ctx)
	var re *ReceiveError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, ErrClosed)
	p, err := s.GetPropertiesContext(ctx)
	require.NoError(t, err)
	require.Equal(t, StateEstablished, p.State, "the peer's end of stream is not Closed")
	require.False(t, p.CanReceive)
	require.True(t, p.CanSend)
	return s
}

// closeAndExpectEOF closes s, waits for Closed, and checks that the raw
// peer reads the end of the stream.
func closeAndExpectEOF(t *testing.T, s *Connection, peer io.Reader) {
	t.Helper()
	require.NoError(t, s.Close())
	<-s.Done()
	require.Equal(t, StateClosed, s.State())
	require.NoError(t, s.Err())
	n, err := peer.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
}

// A request / end of stream / response exchange over TCP: the raw client
// shuts down its sending side after its request and reads the reply.
func TestPeerHalfCloseTCPRequestThenReply(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ap, _ := ln.LocalEndpoints()[0].Addr()
	raw, err := net.Dial("tcp", ap.String())
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write(frame("request"))
	require.NoError(t, err)
	require.NoError(t, raw.(*net.TCPConn).CloseWrite())

	s := halfClosedServer(t, ln, seen, "request")
	require.NoError(t, s.Send(testCtx(t), []byte("reply"), nil))
	got, err := readFrame(raw)
	require.NoError(t, err)
	require.Equal(t, "reply", got)
	closeAndExpectEOF(t, s, raw)
	ln.Stop()
}

// The same over TLS: the client's close_notify ends its sending side, and
// it still reads the reply.
func TestPeerHalfCloseTLSRequestThenReply(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(prohibit(t, Multistreaming)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	raw, err := tls.Dial("tcp", ap.String(), &tls.Config{RootCAs: pki.pool, ServerName: "localhost",
		NextProtos: []string{"gotaps-test"}})
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write(frame("request"))
	require.NoError(t, err)
	require.NoError(t, raw.CloseWrite()) // close_notify

	s := halfClosedServer(t, ln, seen, "request")
	require.Equal(t, "tls", s.GetProperties().Stack)
	require.NoError(t, s.Send(testCtx(t), []byte("reply"), nil))
	got, err := readFrame(raw)
	require.NoError(t, err)
	require.Equal(t, "reply", got)
	closeAndExpectEOF(t, s, raw)
	ln.Stop()
}

// Over QUIC a gotaps client's Final message is its stream's FIN: the
// server replies after it, and the client, whose sending side has ended,
// is Closed once the server closes.
func TestPeerHalfCloseQUICFinalRequestThenReply(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	pki := newTestPKI(t)
	lpre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(quicOnly(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	lpre.AddFramer(framers.NewLengthPrefix())
	ln, err := lpre.Listen(testCtx(t))
	require.NoError(t, err)
	ctx := testCtx(t)
	c, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	require.NoError(t, c.Send(ctx, []byte("request"), NewMessageContext().Final(true)))
	require.False(t, c.GetProperties().CanSend, "the client sent its Final message")

	s := halfClosedServer(t, ln, seen, "request")
	require.NoError(t, s.Send(ctx, []byte("reply"), nil))
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "reply", string(m.Data))
	require.NoError(t, s.Close())
	<-s.Done()
	require.NoError(t, s.Err())
	<-c.Done() // both directions have ended: Closed without Close
	require.Equal(t, StateClosed, c.State())
	require.NoError(t, c.Err())
	ln.Stop()
}

// After the peer's end of stream, a Message sent with the Final property
// ends this side too: the connection is Closed without Close.
func TestFinalAfterPeerHalfCloseCloses(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ap, _ := ln.LocalEndpoints()[0].Addr()
	raw, err := net.Dial("tcp", ap.String())
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write(frame("request"))
	require.NoError(t, err)
	require.NoError(t, raw.(*net.TCPConn).CloseWrite())

	s := halfClosedServer(t, ln, seen, "request")
	require.NoError(t, s.Send(testCtx(t), []byte("last reply"), NewMessageContext().Final(true)))
	select {
	case <-s.Done():
	case <-testCtx(t).Done():
		t.Fatal("the Final message after the peer's end of stream did not close the connection")
	}
	require.Equal(t, StateClosed, s.State())
	require.NoError(t, s.Err())
	got, err := readFrame(raw)
	require.NoError(t, err)
	require.Equal(t, "last reply", got)
	n, err := raw.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
	ln.Stop()
}

// A peer that closed its socket altogether (not only its sending side)
// resets what this side sends after its end of stream: a ConnectionError.
func TestSendAfterPeerFullCloseIsConnectionError(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ap, _ := ln.LocalEndpoints()[0].Addr()
	raw, err := net.Dial("tcp", ap.String())
	require.NoError(t, err)
	_, err = raw.Write(frame("request"))
	require.NoError(t, err)
	require.NoError(t, raw.Close())

	s := halfClosedServer(t, ln, seen, "request")
	ctx := testCtx(t)
	var sendErr error
	for sendErr == nil && ctx.Err() == nil { // the first write draws the reset, a later one fails
		sendErr = s.Send(ctx, []byte("nobody reads this"), nil)
	}
	var se *SendError
	require.ErrorAs(t, sendErr, &se)
	<-s.Done()
	var ce *ConnectionError
	require.ErrorAs(t, s.Err(), &ce)
	require.Equal(t, StateClosed, s.State())
	ln.Stop()
}
