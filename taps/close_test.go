package taps

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// A TCP connection with nothing left to exchange closes at once: Closed
// comes while the peer still holds its end open, and the peer sees a clean
// end of stream (FIN), not a reset.
func TestCloseQuiescentConnectionClosesAtOnce(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	_, err := peer.Write(frame("ping"))
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "ping", string(m.Data))
	require.NoError(t, c.Close())
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a quiescent connection waited for the peer")
	}
	require.NoError(t, c.Err())
	require.Equal(t, StateClosed, c.State())
	n, err := peer.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "the peer must see end of stream, not a reset")
}

// While the peer has not acknowledged everything sent, closing the socket
// could lose it: Close sends its end of stream after the data and lingers,
// reading and discarding whatever comes, until the peer closes too.
func TestCloseWithUnacknowledgedDataLingersUntilPeerCloses(t *testing.T) {
	sys := newTestSystem(t)
	// the peer's receive buffer is tiny: of 8 KiB sent, most stays
	// unacknowledged until it reads
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = setRcvBuf(fd, 2048) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(testCtx(t), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	r := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ln.Addr().(*net.TCPAddr).AddrPort().Port())
	c := initiateTo(t, sys, r)
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	data := bytes.Repeat([]byte("x"), 8<<10)
	require.NoError(t, c.Send(testCtx(t), data, nil))
	require.NoError(t, c.Close())
	got, err := io.ReadAll(io.LimitReader(peer, int64(len(data))))
	require.NoError(t, err)
	require.Equal(t, data, got, "everything sent arrives")
	n, err := peer.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "then the end of stream")
	// what the peer sends now is read and discarded, not reset
	_, err = peer.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	select {
	case <-c.Done():
		t.Fatal("Closed before the peer closed")
	default:
	}
	require.NoError(t, peer.Close())
	<-c.Done()
	require.NoError(t, c.Err())
}
