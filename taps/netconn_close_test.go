package taps

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stalledPeer is a NetConn over TCP to a raw *net.TCPConn that neither
// reads nor closes until the test lets it: whatever the NetConn wrote
// beyond the socket buffers waits, so a graceful close cannot finish.
type stalledPeer struct {
	nc      net.Conn     // the NetConn
	conn    *Connection  // its Connection
	peer    *net.TCPConn // the raw peer
	written []byte       // what Write reported written, in order
}

// newStalledPeers dials n NetConns to a raw listener and writes to each
// until its buffers are full (a Write times out), all at once.
func newStalledPeers(t *testing.T, sys *System, n int) []*stalledPeer {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer raw.Close()
	dial := Dialer(NewPreconnection(WithSystem(sys), WithSendBuffer(64<<10), WithLingerTimeout(time.Hour)))
	sps := make([]*stalledPeer, n)
	for i := range sps {
		nc, err := dial(testCtx(t), "tcp", raw.Addr().String())
		require.NoError(t, err)
		peer, err := raw.Accept()
		require.NoError(t, err)
		tc := peer.(*net.TCPConn)
		require.NoError(t, tc.SetReadBuffer(64<<10))
		sps[i] = &stalledPeer{nc: nc, conn: nc.(*netConn).c, peer: tc}
		t.Cleanup(func() { _ = nc.Close(); _ = tc.Close() })
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, sp := range sps {
		wg.Go(func() { errs[i] = sp.fill(i) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return sps
}

// fill writes until Writes stall: more than the peer's receive buffer
// holds went, and two Writes in a row timed out having written nothing
// (one alone may be a loaded machine's pause). The peer's receive buffer
// and the connection's send buffers are full then.
func (sp *stalledPeer) fill(seed int) error {
	chunk := make([]byte, 16<<10)
	for i := range chunk {
		chunk[i] = byte(seed + i*7)
	}
	rcv, err := rcvBuf(sp.peer)
	if err != nil {
		return err
	}
	stalls := 0
	for {
		if err := sp.nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			return err
		}
		n, err := sp.nc.Write(chunk)
		sp.written = append(sp.written, chunk[:n]...)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if stalls = stalls + 1; n > 0 {
				stalls = 0
			}
			if stalls >= 2 && len(sp.written) > rcv {
				return sp.nc.SetWriteDeadline(time.Time{})
			}
		case err != nil:
			return err
		}
	}
}

// rcvBuf is c's receive buffer size as the kernel has it (SO_RCVBUF).
func rcvBuf(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = sockoptRcvBuf(fd) }); err != nil {
		return 0, err
	}
	return n, serr
}

// TestNetConnCloseDoesNotWaitForPeer: Close returns at once, as a
// *net.TCPConn's does, while the peer neither reads nor closes: it once
// waited up to a second for the Connection to be Closed, that is for the
// peer. What was written still reaches the peer once it reads, whole and
// followed by the end of the stream, and the Connection is Closed cleanly
// once the peer closes.
func TestNetConnCloseDoesNotWaitForPeer(t *testing.T) {
	sys := newTestSystem(t)
	const n = 8
	sps := newStalledPeers(t, sys, n)

	// A Write blocked on the full buffers when Close comes ends with
	// net.ErrClosed (unless it found room before); what it reports written
	// is sent, the rest is not.
	type wres struct {
		n   int
		err error
	}
	blocked := make([]chan wres, n)
	for i, sp := range sps {
		blocked[i] = make(chan wres, 1)
		go func() {
			n, err := sp.nc.Write(bytes.Repeat([]byte{byte(i)}, 1<<10))
			blocked[i] <- wres{n, err}
		}()
	}

	// n Closes that each waited for the peer (up to a second, as they once
	// did) take n seconds; Closes that do not wait take milliseconds. The
	// budget, half of that, can neither be met by the first nor missed by
	// the second. No peer reads or closes before every Close returned.
	const budget = n * time.Second / 2
	closed := make(chan error, n)
	go func() {
		for _, sp := range sps {
			closed <- sp.nc.Close()
		}
	}()
	timeout := time.NewTimer(budget)
	defer timeout.Stop()
	for i := range n {
		select {
		case err := <-closed:
			require.NoError(t, err, "Close #%d", i)
		case <-timeout.C:
			t.Fatalf("%d of %d Closes returned in %v: Close waits for the peer", i, n, budget)
		}
	}

	for i, sp := range sps {
		select {
		case <-sp.conn.Done():
			t.Fatalf("#%d: the Connection is Closed while its peer has read nothing (err %v, wrote %d)", i, sp.conn.Err(), len(sp.written))
		default:
		}
		r := <-blocked[i]
		if r.err != nil { // or it found room before Close
			require.ErrorIs(t, r.err, net.ErrClosed, "#%d: the Write pending at Close", i)
		}
		sp.written = append(sp.written, bytes.Repeat([]byte{byte(i)}, r.n)...)

		// after Close, everything fails with net.ErrClosed
		_, err := sp.nc.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
		_, err = sp.nc.Read(make([]byte, 1))
		require.ErrorIs(t, err, net.ErrClosed)
		require.ErrorIs(t, sp.nc.SetDeadline(time.Time{}), net.ErrClosed)
		require.ErrorIs(t, sp.nc.Close(), net.ErrClosed)
		var ne net.Error
		require.ErrorAs(t, sp.nc.Close(), &ne)
	}

	// Now the peers read: every byte written arrives, then the end of the
	// stream (a graceful close, not a reset).
	type rres struct {
		got []byte
		err error
	}
	reads := make([]chan rres, n)
	for i, sp := range sps {
		reads[i] = make(chan rres, 1)
		go func() {
			got, err := io.ReadAll(sp.peer)
			reads[i] <- rres{got, err}
		}()
	}
	for i, sp := range sps {
		r := <-reads[i]
		require.NoError(t, r.err, "#%d: the peer's read", i)
		require.Equal(t, len(sp.written), len(r.got), "#%d: bytes written, bytes received", i)
		require.True(t, bytes.Equal(sp.written, r.got), "#%d: the bytes received differ from those written", i)
		require.NoError(t, sp.peer.Close())
	}
	for i, sp := range sps {
		select {
		case <-sp.conn.Done():
		case <-testCtx(t).Done():
			t.Fatalf("#%d: the Connection is not Closed after its peer closed", i)
		}
		require.NoError(t, sp.conn.Err(), "#%d", i)
	}
}

// TestNetConnCloseReportsEarlierFailure: Close reports the error of a
// Connection that had already failed (here, reset by its peer), and the
// second Close net.ErrClosed.
func TestNetConnCloseReportsEarlierFailure(t *testing.T) {
	sys := newTestSystem(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer raw.Close()
	nc, err := Dialer(NewPreconnection(WithSystem(sys)))(testCtx(t), "tcp", raw.Addr().String())
	require.NoError(t, err)
	peer, err := raw.Accept()
	require.NoError(t, err)
	require.NoError(t, peer.(*net.TCPConn).SetLinger(0))
	require.NoError(t, peer.Close()) // a reset

	// reading makes the Connection see the reset
	_, err = io.ReadAll(nc)
	require.Error(t, err)
	c := nc.(*netConn).c
	select {
	case <-c.Done():
	case <-testCtx(t).Done():
		t.Fatal("the Connection is not Closed after a reset")
	}
	require.Error(t, c.Err())

	err = nc.Close()
	var ce *ConnectionError
	require.ErrorAs(t, err, &ce)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "close", oe.Op)
	require.ErrorIs(t, nc.Close(), net.ErrClosed)
}

// TestNetConnCloseThenShutdown: a Connection still closing after its
// NetConn's Close (its peer neither reads nor closes) is ended by the
// System's Shutdown, and nothing of it is left (TestMain checks the
// goroutines).
func TestNetConnCloseThenShutdown(t *testing.T) {
	sys := NewSystem()
	sps := newStalledPeers(t, sys, 1)
	sp := sps[0]
	require.NoError(t, sp.nc.Close())
	select {
	case <-sp.conn.Done():
		t.Fatal("the Connection is Closed while its peer has read nothing")
	default:
	}
	// the graceful close cannot end (the peer reads nothing): Shutdown
	// aborts it once ctx ends
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := sys.Shutdown(ctx); err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	select {
	case <-sp.conn.Done():
	case <-testCtx(t).Done():
		t.Fatal("Shutdown returned, the Connection is not Closed")
	}
	require.Error(t, sp.conn.Err(), "an aborted Connection")
}
