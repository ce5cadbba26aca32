package taps

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// RFC 9622 §9.3.2.1: a received message is final when the peer ended its
// direction after it. gotaps marks it whenever it has the end of the
// stream as it delivers the message: the framer delivers it at the clean
// end of the stream (an unterminated last line), or one read of the
// transport returned the bytes and the end together (TLS 1.2: data with
// close_notify; QUIC: data with the stream's FIN). On plain TCP and Unix
// sockets the FIN is read after the data (no read returns both, and
// gotaps does not peek for it: a system call more on every read that
// empties the socket), so a message its delimiter completes is usually
// not marked: the next receive's ReceiveError unwrapping to ErrClosed
// tells the end. These tests end the peer's stream right after its last
// message and receive it either through a receive already waiting or one
// made after the data (and the FIN) arrived.

// finalCase is one framer and how a peer sends its last message with it.
type finalCase struct {
	name string
	fs   func() []framers.Framer
	wire string // what the peer writes
	want string // the last message
}

func finalCases() []finalCase {
	return []finalCase{
		{"LengthPrefix", func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix()} }, string(frame("last words")), "last words"},
		{"Lines", func() []framers.Framer { return []framers.Framer{framers.NewLines()} }, "last words\n", "last words"},
		{"LinesUnterminated", func() []framers.Framer { return []framers.Framer{framers.NewLines()} }, "last words", "last words"},
		{"Delimiter", func() []framers.Framer { return []framers.Framer{framers.NewDelimiter([]byte("||"))} }, "last words||", "last words"},
		{"DelimiterUnterminated", func() []framers.Framer { return []framers.Framer{framers.NewDelimiter([]byte("||"))} }, "last words", "last words"},
	}
}

// finalRaw initiates a connection with fs to a raw TCP peer; with demand it
// has received a first message through a blocking Receive, so that it
// reads on demand (the peer's next bytes wait in the socket).
func finalRaw(t *testing.T, fs []framers.Framer, demand bool) (*Connection, *net.TCPConn) {
	t.Helper()
	c, peer := rawPeer(t, newTestSystem(t), fs...)
	t.Cleanup(c.Abort)
	if demand {
		first := "first\n"
		switch f := fs[0].(type) {
		case *framers.LengthPrefix:
			first = string(frame("first"))
		case *framers.Delimiter:
			if string(f.Separator()) != "\n" {
				first = "first" + string(f.Separator())
			}
		}
		_, err := peer.Write([]byte(first))
		require.NoError(t, err)
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, "first", string(m.Data))
		require.False(t, m.Context.IsFinal())
	}
	return c, peer.(*net.TCPConn)
}

type finalGot struct {
	m   *Message
	err error
}

func receiveAsyncOnce(c *Connection) <-chan finalGot {
	got := make(chan finalGot, 1)
	c.ReceiveAsync(func(_ *Connection, m *Message, err error) { got <- finalGot{m, err} })
	return got
}

func awaitGot(t *testing.T, got <-chan finalGot) (*Message, error) {
	t.Helper()
	select {
	case g := <-got:
		return g.m, g.err
	case <-testCtx(t).Done():
		t.Fatal("no receive event")
		return nil, nil
	}
}

// requireFinalThenClosed checks the last message and that receiving ended.
func requireFinalThenClosed(t *testing.T, c *Connection, m *Message, err error, want string) {
	t.Helper()
	require.NoError(t, err)
	require.Equal(t, want, string(m.Data))
	require.True(t, m.EndOfMessage)
	require.True(t, m.Context.IsFinal(), "the last message before the peer's end of stream is final")
	requireReceiveClosed(t, c)
}

// requireReceiveClosed checks that the next receive tells the peer's end
// of stream: a *ReceiveError unwrapping to ErrClosed.
func requireReceiveClosed(t *testing.T, c *Connection) {
	t.Helper()
	_, err := c.Receive(testCtx(t))
	var re *ReceiveError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, ErrClosed)
}

// A ReceiveAsync waits when the peer sends its last message and its FIN:
// a framer that delivers the message only at the end of the stream (an
// unterminated last line) hands it over already known to be the last.
func TestFinalMarkedForAWaitingReceiveAsyncAtTheEnd(t *testing.T) {
	for _, tc := range finalCases() {
		if tc.name != "LinesUnterminated" && tc.name != "DelimiterUnterminated" {
			continue // the message may be handed over before the FIN arrives
		}
		t.Run(tc.name, func(t *testing.T) {
			c, peer := finalRaw(t, tc.fs(), false)
			got := receiveAsyncOnce(c) // waits: the peer has sent nothing
			_, err := peer.Write([]byte(tc.wire))
			require.NoError(t, err)
			require.NoError(t, peer.CloseWrite())
			m, err := awaitGot(t, got)
			requireFinalThenClosed(t, c, m, err, tc.want)
		})
	}
}

// The same with a blocking Receive that reads for itself (the connection
// reads on demand): it holds the read token as the end of the stream
// completes the message.
func TestFinalMarkedForAWaitingReceiveAtTheEnd(t *testing.T) {
	for _, tc := range finalCases() {
		if tc.name != "LinesUnterminated" && tc.name != "DelimiterUnterminated" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c, peer := finalRaw(t, tc.fs(), true)
			_, err := peer.Write([]byte(tc.wire))
			require.NoError(t, err)
			require.NoError(t, peer.CloseWrite())
			m, err := c.Receive(testCtx(t))
			requireFinalThenClosed(t, c, m, err, tc.want)
		})
	}
}

// The last message and the FIN are both in the socket when a blocking
// Receive (reading on demand) or a ReceiveAsync reads them: a framer that
// delivers the message only at the clean end of the stream (an
// unterminated last line) delivers it final.
func TestFinalMarkedAtTheFINAlreadyInTheSocket(t *testing.T) {
	withFINInTheSocket(t, true, func(t *testing.T, c *Connection, m *Message, err error, want string) {
		requireFinalThenClosed(t, c, m, err, want)
	})
}

// A message its framer completes (a length prefix, a delimiter) is in the
// socket with the FIN behind it. Over TCP a read returns the bytes and
// only the next one the end of the stream, and gotaps does not peek for
// the FIN (README, MessageContext.IsFinal): the message is final only if
// that next read came before it was taken (the connection's reader may
// have read on), which neither a blocking Receive nor a ReceiveAsync can
// count on; usually it is not. Whether or not, the message comes whole and
// once, and the next receive tells the end: a *ReceiveError unwrapping to
// ErrClosed.
func TestFinalOverTCPTheFINReadAfterTheData(t *testing.T) {
	withFINInTheSocket(t, false, func(t *testing.T, c *Connection, m *Message, err error, want string) {
		require.NoError(t, err)
		require.Equal(t, want, string(m.Data))
		require.True(t, m.EndOfMessage)
		requireReceiveClosed(t, c)
	})
}

// withFINInTheSocket runs check, through a blocking Receive and a
// ReceiveAsync, on the message of each of finalCases whose last message is
// unterminated (or, with unterminated false, complete) once the peer has
// written it and its FIN, and the FIN is acknowledged.
func withFINInTheSocket(t *testing.T, unterminated bool, check func(t *testing.T, c *Connection, m *Message, err error, want string)) {
	for _, tc := range finalCases() {
		if (tc.name == "LinesUnterminated" || tc.name == "DelimiterUnterminated") != unterminated {
			continue
		}
		for _, async := range []bool{false, true} {
			name := tc.name + "/Receive"
			if async {
				name = tc.name + "/ReceiveAsync"
			}
			t.Run(name, func(t *testing.T) {
				c, peer := finalRaw(t, tc.fs(), true)
				_, err := peer.Write([]byte(tc.wire))
				require.NoError(t, err)
				require.NoError(t, peer.CloseWrite())
				awaitFINAcked(t, peer)
				var m *Message
				if async {
					m, err = awaitGot(t, receiveAsyncOnce(c))
				} else {
					m, err = c.Receive(testCtx(t))
				}
				check(t, c, m, err, tc.want)
			})
		}
	}
}

// Without a framer the stream is one message, which ends at the FIN: its
// last bytes come as a partial, then an empty final Received (as before).
func TestFinalWithoutFramerIsTheEmptyLastPiece(t *testing.T) {
	c, peer := finalRaw(t, nil, false)
	_, err := peer.Write([]byte("the whole stream"))
	require.NoError(t, err)
	require.NoError(t, peer.CloseWrite())
	awaitFINAcked(t, peer)
	ctx := testCtx(t)
	var data []byte
	for {
		m, err := c.Receive(ctx)
		require.NoError(t, err)
		data = append(data, m.Data...)
		if m.EndOfMessage {
			require.True(t, m.Context.IsFinal())
			break
		}
		require.False(t, m.Context.IsFinal())
	}
	require.Equal(t, "the whole stream", string(data))
	_, err = c.Receive(ctx)
	require.ErrorIs(t, err, ErrClosed)
}

// TLS: a crypto/tls peer sends its last message, close_notify and the FIN
// in one segment, after a ReceiveAsync is waiting. Over TLS 1.2 crypto/tls
// returns the data with io.EOF from one read; the message delivered from
// that read is final. A framer delivering at the end (an unterminated
// line) marks it final over TLS 1.3 as well.
func TestFinalMarkedOverTLSWhenTheEndCameWithTheData(t *testing.T) {
	for _, tt := range []struct {
		name  string
		tls12 bool
		tc    finalCase
	}{
		{"LengthPrefixTLS12", true, finalCases()[0]},
		{"LinesTLS12", true, finalCases()[1]},
		{"LinesUnterminatedTLS12", true, finalCases()[2]},
		{"LinesUnterminatedTLS13", false, finalCases()[2]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sys := newTestSystem(t)
			pki := newTestPKI(t)
			var maxVersion uint16
			if tt.tls12 {
				maxVersion = tls.VersionTLS12
			}
			port, start, done := rawTLSServerOnCue(t, pki, []byte(tt.tc.wire), maxVersion)
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()),
				WithTransportProperties(tlsOnlyProps(t)),
				WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
			for _, f := range tt.tc.fs() {
				pre.AddFramer(f)
			}
			c, err := pre.Initiate(testCtx(t))
			require.NoError(t, err)
			t.Cleanup(c.Abort)
			got := receiveAsyncOnce(c)
			close(start)
			m, err := awaitGot(t, got)
			requireFinalThenClosed(t, c, m, err, tt.tc.want)
			require.NoError(t, c.Close())
			require.NoError(t, <-done)
		})
	}
}

// rawTLSServerOnCue is rawTLSServer ending its stream together with the
// data (tlsEndTogether), once start is closed.
func rawTLSServerOnCue(t *testing.T, pki *testPKI, data []byte, maxVersion uint16) (uint16, chan struct{}, <-chan error) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: []string{"gotaps-test"}, MaxVersion: maxVersion}
	start := make(chan struct{})
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tc, err := ln.AcceptTCP()
		if err != nil {
			done <- err
			return
		}
		defer tc.Close()
		hc := &heldConn{TCPConn: tc}
		c := tls.Server(hc, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			done <- err
			return
		}
		select {
		case <-start:
		case <-ctx.Done():
			done <- ctx.Err()
			return
		}
		done <- endTLSStream(c, hc, data, tlsEndTogether)
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port), start, done
}

// QUIC: a raw quic-go peer ends its stream (FIN) after an unterminated last
// line, while a ReceiveAsync of the gotaps side waits: the framer delivers
// the line with the stream's end, and it is final.
func TestFinalMarkedOverQUICForAWaitingReceiveAsync(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(quicOnly(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLines())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	ctx := testCtx(t)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	qc, err := quic.DialAddr(ctx, ap.String(), &tls.Config{RootCAs: pki.pool, NextProtos: []string{"gotaps-test"}, ServerName: "localhost"}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	str, err := qc.OpenStreamSync(ctx)
	require.NoError(t, err)
	_, err = str.Write([]byte("first\n")) // the stream opens with its first bytes
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(s.Abort)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))
	require.False(t, m.Context.IsFinal())
	got := receiveAsyncOnce(s) // waits: nothing more was sent
	_, err = str.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, str.Close()) // FIN
	m, err = awaitGot(t, got)
	requireFinalThenClosed(t, s, m, err, "last words")
}
