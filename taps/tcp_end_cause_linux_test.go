//go:build linux

package taps

import (
	"context"
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

// heldErrStack is TCP whose writer goroutine, once a write of it fails
// (the socket's error: the kernel hands it to one call), reports that on
// tookErr and holds its return until the transport is aborted or closed:
// the connection learns of the write's error only once it ends the
// transport. Reads and the connection's own writes go to the socket
// directly (SyscallConn), as on plain TCP.
type heldErrStack struct {
	stacks.Stack
	writing chan struct{}  // closed as the writer goroutine first writes
	tookErr chan error     // the writer's error, once
	made    chan *heldErrT // the transport dialed, once
	once    sync.Once
}

type heldErrT struct {
	stacks.Transport
	s        *heldErrStack
	once     sync.Once
	released chan struct{}
}

func (s *heldErrStack) Dial(ctx context.Context, r netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.Stack.Dial(ctx, r, o)
	if err != nil {
		return nil, err
	}
	h := &heldErrT{Transport: t, s: s, released: make(chan struct{})}
	s.made <- h
	return h, nil
}

func (h *heldErrT) SyscallConn() (syscall.RawConn, error) {
	return h.Transport.(syscall.Conn).SyscallConn()
}

func (h *heldErrT) WriteBuffers(b *net.Buffers) (int64, error) {
	h.s.once.Do(func() { close(h.s.writing) })
	n, err := h.Transport.(interface {
		WriteBuffers(*net.Buffers) (int64, error)
	}).WriteBuffers(b)
	if err != nil {
		h.s.tookErr <- err
		<-h.released
	}
	return n, err
}

func (h *heldErrT) release() { h.once.Do(func() { close(h.released) }) }

func (h *heldErrT) Abort() error {
	h.release()
	return h.Transport.Abort()
}

func (h *heldErrT) Close() error {
	h.release()
	return h.Transport.Close()
}

// creditFullPeer initiates a connection (opts added) through a
// heldErrStack to a raw TCP peer, which sends sent messages of 1000 bytes,
// more than the receive buffer: the reader stops reading (it reads on once
// the application receives). It returns the connection, the peer and the
// transport.
func creditFullPeer(t *testing.T, sys *System, sent int, opts ...PreconnectionOption) (*Connection, *net.TCPConn, *heldErrStack, *heldErrT) {
	t.Helper()
	ln, r := rawListener(t)
	st := &heldErrStack{Stack: stacks.TCP(), writing: make(chan struct{}), tookErr: make(chan error, 1), made: make(chan *heldErrT, 1)}
	pre := NewPreconnection(append([]PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(r), WithReceiveBuffer(4 << 10)}, opts...)...)
	pre.AddFramer(framers.NewLengthPrefix())
	pre.stackList = []stacks.Stack{st}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	raw, err := ln.Accept()
	require.NoError(t, err)
	peer := raw.(*net.TCPConn)
	t.Cleanup(func() { _ = peer.Close() })
	msg := string(make([]byte, 1000))
	for range sent {
		_, err = peer.Write(frame(msg))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { _, _, full := c.link.RecvCreditForTest(); return full },
		5*time.Second, time.Millisecond, "the reader never waited for receive credit")
	return c, peer, st, <-st.made
}

// writerTookReset is creditFullPeer, then this side sends a message larger
// than the socket buffers (its outcome goes to the channel returned): the
// writer goroutine writes what the socket did not take at once, and waits
// on the full socket. The peer then resets the
// connection (its SO_LINGER 0 close, with data unread); the writer takes
// the socket's error (ECONNRESET: the kernel hands it to one call), which
// it holds until the transport ends. When the application receives, the
// reader reads the data left in the socket, then an end of stream: the
// kernel shut the socket's receiving side down as the reset ended it,
// though no FIN came.
func writerTookReset(t *testing.T, sys *System, sent int, opts ...PreconnectionOption) (*Connection, <-chan error) {
	t.Helper()
	c, peer, st, _ := creditFullPeer(t, sys, sent, opts...)
	outcome := make(chan error, 1)
	c.SendAsync(make([]byte, 12<<20), nil, func(_ *Connection, err error) { outcome <- err })
	select {
	case <-st.writing: // what the socket did not take at once goes to the writer
	case <-testCtx(t).Done():
		t.Fatal("the writer goroutine never wrote")
	}
	require.NoError(t, peer.SetLinger(0))
	require.NoError(t, peer.Close())
	select {
	case took := <-st.tookErr:
		require.ErrorIs(t, took, syscall.ECONNRESET, "the writer took the socket's error")
	case <-testCtx(t).Done():
		t.Fatal("the writer never failed")
	}
	return c, outcome
}

// TestWriterTakesTheResetNoHalfClose: when the writer took the socket's
// error (writerTookReset), the end of stream the reader reads after it
// must not half-close the connection (Established, canReceive false,
// PeerEndOfStream: the application told the peer ended its stream cleanly)
// while the writer's report is on its way: the connection ends with a
// ConnectionError unwrapping to ECONNRESET, and so do the receive after
// the data and the message's SendError.
func TestWriterTakesTheResetNoHalfClose(t *testing.T) {
	opt, seen := peerEndOfStream()
	c, outcome := writerTookReset(t, newTestSystem(t, opt), 16)
	ctx := testCtx(t)
	var rerr error
	for rerr == nil {
		_, rerr = c.Receive(ctx)
	}
	select {
	case <-seen:
		t.Fatal("the reset was taken for the peer's end of stream: the connection half-closed")
	default:
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
	require.ErrorIs(t, c.Err(), syscall.ECONNRESET, "the connection names the reset the writer took")
	select {
	case err := <-outcome:
		require.ErrorIs(t, err, syscall.ECONNRESET)
	case <-ctx.Done():
		t.Fatal("no outcome for the message")
	}
}

// TestWriterTakesTheResetReestablishingNamesIt: the same under a
// re-establishment policy: the Reestablishing handler is told the reset
// the writer took, not that the peer closed the connection (io.EOF).
func TestWriterTakesTheResetReestablishingNamesIt(t *testing.T) {
	const sent = 16
	why := make(chan error, 1)
	var once sync.Once
	c, _ := writerTookReset(t, newTestSystem(t), sent,
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
// half-close (the receive after the data reported the peer's clean end,
// ErrClosed, and the connection stayed Established until the reset watch
// saw the reset).
func TestPeerFINThenResetIsConnectionError(t *testing.T) {
	opt, seen := peerEndOfStream()
	c, peer, _, h := creditFullPeer(t, newTestSystem(t, opt), 16)
	require.NoError(t, peer.CloseWrite())
	require.NoError(t, peer.SetLinger(0))
	require.NoError(t, peer.Close())
	rc, err := h.SyscallConn()
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
