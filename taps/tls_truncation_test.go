package taps

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// A TLS peer's end of stream is clean only with its close_notify. A TCP
// FIN alone (the peer, or an attacker on the path, cutting the stream) may
// truncate the data (RFC 8446 §6.1, RFC 5246 §7.2.1), though crypto/tls
// reports it as a clean io.EOF when it falls on a record boundary. The
// peers here are crypto/tls endpoints that are not gotaps, ending their
// stream each way.

// tlsPeerEnd is how a raw TLS peer ends its stream.
type tlsPeerEnd uint8

const (
	tlsEndCloseNotify tlsPeerEnd = iota // close_notify, then a TCP FIN
	tlsEndClose                         // tls.Conn.Close: close_notify, and the socket closed
	tlsEndTogether                      // the data, close_notify and the FIN in one segment
	tlsEndTruncate                      // a TCP FIN without close_notify
)

func (e tlsPeerEnd) String() string {
	return [...]string{"CloseNotify", "Close", "Together", "Truncate"}[e]
}

// heldConn holds what is written to it while hold is set; flush then
// writes it in one piece.
type heldConn struct {
	*net.TCPConn
	hold bool
	buf  []byte
}

func (c *heldConn) Write(b []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, b...)
		return len(b), nil
	}
	return c.TCPConn.Write(b)
}

// flush writes the held bytes and a FIN in one segment where the system
// allows (corkTCP).
func (c *heldConn) flush() error {
	c.hold = false
	// tls.Conn.CloseWrite leaves an expired write deadline behind
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		return err
	}
	if err := corkTCP(c.TCPConn); err != nil {
		return err
	}
	if _, err := c.TCPConn.Write(c.buf); err != nil {
		return err
	}
	return c.TCPConn.CloseWrite()
}

// endTLSStream writes data on c (over hc) and ends its stream as end says.
// Unless the socket is closed, it then reads until the gotaps side has
// ended its stream too (or dropped the connection).
func endTLSStream(c *tls.Conn, hc *heldConn, data []byte, end tlsPeerEnd) error {
	hc.hold = end == tlsEndTogether
	if _, err := c.Write(data); err != nil {
		return err
	}
	var err error
	switch end {
	case tlsEndCloseNotify:
		if err = c.CloseWrite(); err == nil {
			err = hc.CloseWrite()
		}
	case tlsEndClose:
		return c.Close()
	case tlsEndTogether:
		if err = c.CloseWrite(); err == nil {
			err = hc.flush()
		}
	case tlsEndTruncate:
		err = hc.CloseWrite() // the TCP socket's FIN: no close_notify
	}
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, c)
	return nil
}

// rawTLSServer serves one connection on 127.0.0.1 with crypto/tls (up to
// TLS version maxVersion, zero for the default): it writes data and ends
// its stream as end says. The returned channel gets the outcome once the
// peer is done.
func rawTLSServer(t *testing.T, pki *testPKI, data []byte, end tlsPeerEnd, maxVersion uint16) (uint16, <-chan error) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: []string{"gotaps-test"},
		MaxVersion: maxVersion}
	done := make(chan error, 1)
	go func() {
		tc, err := ln.AcceptTCP()
		if err != nil {
			done <- err
			return
		}
		defer tc.Close()
		hc := &heldConn{TCPConn: tc}
		c := tls.Server(hc, cfg)
		if err := c.Handshake(); err != nil {
			done <- err
			return
		}
		done <- endTLSStream(c, hc, data, end)
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port), done
}

// receiveToEnd receives until receiving ends: the bytes, whether the last
// message was final, and the error that ended receiving.
func receiveToEnd(t *testing.T, c *Connection) (data []byte, final bool, err error) {
	t.Helper()
	ctx := testCtx(t)
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			return data, final, err
		}
		data = append(data, m.Data...)
		final = m.Context.IsFinal()
	}
}

// checkTLSEnd checks how c, whose peer sent want and ended its stream
// (truncated: with a TCP FIN that c does not take for a clean end), ended. seen is closed when a connection notices a clean end of
// stream (peerEndOfStream). With close_notify the connection half-closes:
// the last message is final, and c is Closed once it closes too. Without
// it, c ends by itself with a ConnectionError that tells truncation, and
// the bytes received before are still delivered.
func checkTLSEnd(t *testing.T, c *Connection, seen <-chan struct{}, truncated bool, want string) {
	t.Helper()
	ctx := testCtx(t)
	if !truncated {
		select {
		case <-seen:
		case <-c.Done():
			t.Fatalf("the peer's clean end of stream ended the connection: %v", c.Err())
		case <-ctx.Done():
			t.Fatal("the peer's end of stream was never noticed")
		}
		data, final, err := receiveToEnd(t, c)
		require.Equal(t, want, string(data))
		require.True(t, final, "the last message before close_notify is final")
		var re *ReceiveError
		require.ErrorAs(t, err, &re)
		require.ErrorIs(t, err, ErrClosed)
		require.Equal(t, StateEstablished, c.State(), "the peer's end of stream is not Closed")
		require.NoError(t, c.Close())
		<-c.Done()
		require.Equal(t, StateClosed, c.State())
		require.NoError(t, c.Err())
		return
	}
	select {
	case <-c.Done(): // no Close: the truncation ends the connection
	case <-seen:
		c.Abort()
		t.Fatal("a TCP FIN without close_notify was taken for a clean end of stream")
	case <-ctx.Done():
		c.Abort()
		t.Fatalf("a truncated connection must end by itself (%v)", c.State())
	}
	err := c.Err()
	var ce *ConnectionError
	require.ErrorAs(t, err, &ce, "a TCP FIN without close_notify is no clean end")
	require.Equal(t, ReasonProtocolFailed, ce.Reason)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.ErrorIs(t, err, stacks.ErrTLSTruncated)
	require.False(t, errors.Is(err, io.EOF))
	data, final, rerr := receiveToEnd(t, c)
	require.Equal(t, want, string(data), "the bytes before the truncation are delivered")
	require.False(t, final, "a truncated stream has no final message")
	var re *ReceiveError
	require.ErrorAs(t, rerr, &re)
	require.ErrorIs(t, rerr, stacks.ErrTLSTruncated, "the receive after the last message tells why receiving ended")
}

// A gotaps TLS client of a crypto/tls server, with and without a framer:
// the framed stream is cut at a message boundary, where only TLS can tell.
// Over TLS 1.2 a close_notify read with the data ends the very read that
// returns the data (crypto/tls returns the data with io.EOF); over TLS 1.3
// the alert is encrypted and ends the next read.
func TestTLSTruncationOfAnInitiatedConnection(t *testing.T) {
	for _, tt := range []struct {
		end    tlsPeerEnd
		framed bool
		tls12  bool
		allow  bool // SetTruncationAllowed(true)
	}{
		{tlsEndCloseNotify, false, false, false},
		{tlsEndClose, false, false, false},
		{tlsEndTogether, false, false, false},
		{tlsEndTogether, false, true, false},
		{tlsEndTruncate, false, false, false},
		{tlsEndTruncate, false, true, false},
		{tlsEndCloseNotify, true, false, false},
		{tlsEndTogether, true, false, false},
		{tlsEndTogether, true, true, false},
		{tlsEndTruncate, true, false, false},
		{tlsEndTruncate, true, true, false},
		{tlsEndTruncate, false, false, true},
		{tlsEndTruncate, true, false, true},
		{tlsEndTruncate, true, true, true},
		{tlsEndCloseNotify, true, false, true},
	} {
		name := tt.end.String()
		if tt.framed {
			name += "Framed"
		}
		if tt.allow {
			name += "Allowed"
		}
		var maxVersion uint16
		if tt.tls12 {
			name, maxVersion = name+"TLS12", tls.VersionTLS12
		}
		t.Run(name, func(t *testing.T) {
			opt, seen := peerEndOfStream()
			sys := newTestSystem(t, opt)
			pki := newTestPKI(t)
			payload, want := []byte("the whole story"), "the whole story"
			if tt.framed {
				payload, want = frame("one", "two"), "onetwo"
			}
			port, done := rawTLSServer(t, pki, payload, tt.end, maxVersion)
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec().SetTruncationAllowed(tt.allow)),
				WithTransportProperties(tlsOnlyProps(t)),
				WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
			if tt.framed {
				pre.AddFramer(framers.NewLengthPrefix())
			}
			c, err := pre.Initiate(testCtx(t))
			require.NoError(t, err)
			truncated := tt.end == tlsEndTruncate && !tt.allow
			if !truncated { // else it may have ended already
				require.Equal(t, "tls", c.GetProperties().Stack)
			}
			checkTLSEnd(t, c, seen, truncated, want)
			require.NoError(t, <-done)
		})
	}
}

// A crypto/tls client of a gotaps TLS Listener truncates its stream after
// a framed request: the accepted connection ends with a ConnectionError,
// not with a final request.
func TestTLSTruncationOfAnAcceptedConnection(t *testing.T) {
	for _, tt := range []struct {
		end   tlsPeerEnd
		allow bool // SetTruncationAllowed(true)
	}{{tlsEndCloseNotify, false}, {tlsEndTruncate, false}, {tlsEndTruncate, true}} {
		end, name := tt.end, tt.end.String()
		if tt.allow {
			name += "Allowed"
		}
		t.Run(name, func(t *testing.T) {
			opt, seen := peerEndOfStream()
			sys := newTestSystem(t, opt)
			pki := newTestPKI(t)
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec().SetTruncationAllowed(tt.allow)),
				WithTransportProperties(tlsOnlyProps(t)),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
			pre.AddFramer(framers.NewLengthPrefix())
			ln, err := pre.Listen(testCtx(t))
			require.NoError(t, err)
			defer ln.Stop()
			tc, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(listenerAddr(t, ln)))
			require.NoError(t, err)
			defer tc.Close()
			hc := &heldConn{TCPConn: tc}
			raw := tls.Client(hc, &tls.Config{RootCAs: pki.pool, ServerName: "localhost", NextProtos: []string{"gotaps-test"}})
			require.NoError(t, raw.HandshakeContext(testCtx(t)))
			done := make(chan error, 1)
			go func() { done <- endTLSStream(raw, hc, frame("request"), end) }()

			s, err := ln.Accept(testCtx(t))
			require.NoError(t, err)
			checkTLSEnd(t, s, seen, end == tlsEndTruncate && !tt.allow, "request")
			require.NoError(t, <-done)
		})
	}
}
