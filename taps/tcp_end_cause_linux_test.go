//go:build linux

package taps

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// heldErrStack is TCP or TLS whose writer goroutine, once a write of it
// fails (the socket's error: the kernel hands it to one call), reports
// that on tookErr and holds its return until the transport is aborted or
// closed: the connection learns of the write's error only once it ends
// the transport. Over TCP the reads and the connection's own writes go to
// the socket directly (SyscallConn), as on plain TCP (heldErrT); over TLS
// every write goes through the writer goroutine (heldErrTLS).
type heldErrStack struct {
	stacks.Stack
	writing chan struct{}         // closed as the writer goroutine first writes
	tookErr chan error            // the writer's error, once
	made    chan stacks.Transport // the transport dialed, once
	once    sync.Once
}

// heldErr is the holding part of a heldErrStack's transport.
type heldErr struct {
	stacks.Transport
	s        *heldErrStack
	once     sync.Once
	released chan struct{}
}

type heldErrT struct{ *heldErr }

type heldErrTLS struct{ *heldErr }

func (s *heldErrStack) Dial(ctx context.Context, r netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.Stack.Dial(ctx, r, o)
	if err != nil {
		return nil, err
	}
	h := &heldErr{Transport: t, s: s, released: make(chan struct{})}
	var made stacks.Transport = heldErrTLS{h}
	if _, ok := t.(syscall.Conn); ok {
		made = heldErrT{h}
	}
	s.made <- made
	return made, nil
}

// wrote notes a write of the writer goroutine, and holds it when it failed.
func (h *heldErr) wrote(err error) {
	if err != nil {
		h.s.tookErr <- err
		<-h.released
	}
}

func (h heldErrT) SyscallConn() (syscall.RawConn, error) {
	return h.Transport.(syscall.Conn).SyscallConn()
}

func (h heldErrT) WriteBuffers(b *net.Buffers) (int64, error) {
	h.s.once.Do(func() { close(h.s.writing) })
	n, err := h.Transport.(interface {
		WriteBuffers(*net.Buffers) (int64, error)
	}).WriteBuffers(b)
	h.wrote(err)
	return n, err
}

func (h heldErrTLS) Write(b []byte) (int, error) {
	h.s.once.Do(func() { close(h.s.writing) })
	n, err := h.Transport.Write(b)
	h.wrote(err)
	return n, err
}

func (h *heldErr) release() { h.once.Do(func() { close(h.released) }) }

func (h *heldErr) Abort() error {
	h.release()
	return h.Transport.Abort()
}

func (h *heldErr) Close() error {
	h.release()
	return h.Transport.Close()
}

// creditFullPeer initiates a connection (opts added) through a
// heldErrStack to a raw peer (TCP, or with tl a crypto/tls server), which
// sends sent messages of 1000 bytes, more than the receive buffer: the
// reader stops reading (it reads on once the application receives). It
// returns the connection, the peer's TCP socket and the stack.
func creditFullPeer(t *testing.T, sys *System, tl *tlsPeer, sent int, opts ...PreconnectionOption) (*Connection, *net.TCPConn, *heldErrStack) {
	t.Helper()
	ln, r := rawListener(t)
	st := &heldErrStack{Stack: stacks.TCP(), writing: make(chan struct{}), tookErr: make(chan error, 1), made: make(chan stacks.Transport, 1)}
	base := []PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(r), WithReceiveBuffer(4 << 10)}
	if tl != nil {
		st.Stack = stacks.TLS()
		base = append(base, WithSecurityParameters(tl.pki.clientSec().SetTruncationAllowed(tl.allowTrunc)))
	}
	pre := NewPreconnection(append(base, opts...)...)
	pre.AddFramer(framers.NewLengthPrefix())
	pre.stackList = []stacks.Stack{st}
	type accepted struct {
		w   io.Writer
		tcp *net.TCPConn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		a := accepted{w: raw, tcp: raw.(*net.TCPConn)}
		if tl != nil {
			tc := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{tl.pki.server}, NextProtos: []string{"gotaps-test"}})
			a.w, a.err = tc, tc.Handshake()
		}
		acc <- a
	}()
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	a := <-acc
	require.NoError(t, a.err)
	t.Cleanup(func() { _ = a.tcp.Close() })
	msg := string(make([]byte, 1000))
	for range sent {
		_, err = a.w.Write(frame(msg))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { _, _, full := c.link.RecvCreditForTest(); return full },
		5*time.Second, time.Millisecond, "the reader never waited for receive credit")
	return c, a.tcp, st
}

// writerTookError is creditFullPeer, then this side sends a message
// larger than the socket buffers (its outcome goes to the channel
// returned): the writer goroutine writes what the socket did not take at
// once, and waits on the full socket. The socket then dies of want:
// ECONNRESET, the peer resets the connection (its SO_LINGER 0 close, with
// data unread); ETIMEDOUT, the peer reads nothing and TCP_USER_TIMEOUT
// (opts must set it) ends the socket. The writer takes the socket's error
// (the kernel hands it to one call), which it holds until the transport
// ends. When the application receives, the reader reads the data left in
// the socket, then an end of stream: the kernel shut the socket's
// receiving side down as it ended it, though no FIN came.
func writerTookError(t *testing.T, sys *System, tl *tlsPeer, want syscall.Errno, opts ...PreconnectionOption) (*Connection, <-chan error) {
	t.Helper()
	c, peer, st := creditFullPeer(t, sys, tl, 16, opts...)
	outcome := make(chan error, 1)
	c.SendAsync(make([]byte, 12<<20), nil, func(_ *Connection, err error) { outcome <- err })
	select {
	case <-st.writing:
	case <-testCtx(t).Done():
		t.Fatal("the writer goroutine never wrote")
	}
	if want == syscall.ECONNRESET {
		require.NoError(t, peer.SetLinger(0))
		require.NoError(t, peer.Close())
	}
	select {
	case took := <-st.tookErr:
		require.ErrorIs(t, took, want, "the writer took the socket's error")
	case <-testCtx(t).Done():
		t.Fatal("the writer never failed")
	}
	return c, outcome
}

// tlsPeer makes creditFullPeer's peer a crypto/tls server with pki's
// certificate; allowTrunc is the gotaps side's SetTruncationAllowed.
type tlsPeer struct {
	pki        *testPKI
	allowTrunc bool
}

// overTCPAndTLS runs test over plain TCP, over TLS, and over TLS taking a
// FIN without close_notify for a clean end (SetTruncationAllowed).
func overTCPAndTLS(t *testing.T, test func(t *testing.T, tl *tlsPeer)) {
	t.Run("TCP", func(t *testing.T) { test(t, nil) })
	t.Run("TLS", func(t *testing.T) { test(t, &tlsPeer{pki: newTestPKI(t)}) })
	t.Run("TLSTruncationAllowed", func(t *testing.T) { test(t, &tlsPeer{pki: newTestPKI(t), allowTrunc: true}) })
}

// TestWriterTakesTheResetNoHalfClose: when the writer took the socket's
// error (writerTookError), the end of stream the reader reads after it
// must not half-close the connection (Established, canReceive false,
// PeerEndOfStream: the application told the peer ended its stream cleanly)
// while the writer's report is on its way: the connection ends with a
// ConnectionError unwrapping to ECONNRESET, and so do the receive after
// the data and the message's SendError. Over TLS the end was taken for a
// truncation (ErrTLSTruncated), or with SetTruncationAllowed for the
// peer's clean end.
func TestWriterTakesTheResetNoHalfClose(t *testing.T) {
	overTCPAndTLS(t, func(t *testing.T, tl *tlsPeer) { writerTookErrorNoHalfClose(t, tl, syscall.ECONNRESET) })
}

// TestWriterTakesTheUserTimeoutNoHalfClose: the same when
// TCP_USER_TIMEOUT (tcp.userTimeoutEnabled) ends the socket of a peer that
// reads nothing: ETIMEDOUT.
func TestWriterTakesTheUserTimeoutNoHalfClose(t *testing.T) {
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(TCPUserTimeoutEnabled, true))
	require.NoError(t, tp.Set(TCPUserTimeoutValue, 300*time.Millisecond))
	overTCPAndTLS(t, func(t *testing.T, tl *tlsPeer) {
		writerTookErrorNoHalfClose(t, tl, syscall.ETIMEDOUT, WithTransportProperties(tp))
	})
}

func writerTookErrorNoHalfClose(t *testing.T, tl *tlsPeer, want syscall.Errno, opts ...PreconnectionOption) {
	opt, seen := peerEndOfStream()
	c, outcome := writerTookError(t, newTestSystem(t, opt), tl, want, opts...)
	ctx := testCtx(t)
	var rerr error
	for rerr == nil {
		_, rerr = c.Receive(ctx)
	}
	select {
	case <-seen:
		t.Fatal("the socket's end was taken for the peer's end of stream: the connection half-closed")
	default:
	}
	require.ErrorIs(t, rerr, want, "the receive after the data names the socket's error, not a clean end of stream")
	requireDone(t, c)
	select {
	case <-seen:
		t.Fatal("the connection half-closed before it failed")
	default:
	}
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce)
	require.ErrorIs(t, c.Err(), want, "the connection names the error the writer took")
	select {
	case err := <-outcome:
		require.ErrorIs(t, err, want)
	case <-ctx.Done():
		t.Fatal("no outcome for the message")
	}
}

// TestWriterTakesTheResetReestablishingNamesIt: the same under a
// re-establishment policy: the Reestablishing handler is told the reset
// the writer took, not that the peer closed the connection (io.EOF).
func TestWriterTakesTheResetReestablishingNamesIt(t *testing.T) {
	overTCPAndTLS(t, writerTakesTheResetReestablishingNamesIt)
}

func writerTakesTheResetReestablishingNamesIt(t *testing.T, tl *tlsPeer) {
	const sent = 16
	why := make(chan error, 1)
	var once sync.Once
	c, _ := writerTookError(t, newTestSystem(t), tl, syscall.ECONNRESET,
		WithReestablishment(ReestablishPolicy{Initial: time.Hour}),
		func(p *Preconnection) {
			p.OnReestablishing(func(_ *Connection, err error, _ int) { once.Do(func() { why <- err }) })
		})
	ctx := testCtx(t)
	for range sent { // the reader reads on, up to the end of the stream
		_, err := c.Receive(ctx)
		require.NoError(t, err)
	}
	select {
	case err := <-why:
		require.ErrorIs(t, err, syscall.ECONNRESET, "re-established for the reset the writer took")
		require.NotErrorIs(t, err, io.EOF)
	case <-ctx.Done():
		t.Fatal("the connection never re-established")
	}
}

// TestPeerFINThenResetIsConnectionError: the peer ends its stream (FIN)
// and then resets the connection (its SO_LINGER 0 close) before this side
// has read the FIN (the receive buffer is charged full). The reads then
// return the data and the end of stream, but the socket has ended, its
// error pending (the kernel's EPIPE of a reset in CLOSE_WAIT): the peer
// aborted, which is a ConnectionError unwrapping to ECONNRESET, not a
// half-close (before, the receive after the data reported the peer's
// clean end, ErrClosed, and the connection stayed Established until the
// peer-reset watch saw the reset).
func TestPeerFINThenResetIsConnectionError(t *testing.T) {
	opt, seen := peerEndOfStream()
	c, peer, st := creditFullPeer(t, newTestSystem(t, opt), nil, 16)
	require.NoError(t, peer.CloseWrite())
	require.NoError(t, peer.SetLinger(0))
	require.NoError(t, peer.Close())
	rc, err := (<-st.made).(heldErrT).SyscallConn()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return tcpStateOf(t, rc) == unix.BPF_TCP_CLOSE }, 5*time.Second, time.Millisecond,
		"the reset never reached this side's socket")

	ctx := testCtx(t)
	var rerr error
	for rerr == nil {
		_, rerr = c.Receive(ctx)
	}
	require.ErrorIs(t, rerr, syscall.ECONNRESET, "the receive after the data names the reset, not a clean end of stream")
	requireDone(t, c)
	select {
	case <-seen:
		t.Fatal("the connection half-closed before it failed")
	default:
	}
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce)
	require.ErrorIs(t, c.Err(), syscall.ECONNRESET)
}

// tcpStateOf reads the TCP state of the socket of rc (TCP_INFO).
func tcpStateOf(t *testing.T, rc syscall.RawConn) uint8 {
	t.Helper()
	var state uint8
	require.NoError(t, rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		require.NoError(t, err)
		state = info.State
	}))
	return state
}
