package taps

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// A peer that stops reading while gotaps still has data queued for it in
// user space (the socket's send buffer and the peer's receive buffer are
// full): connTimeout bounds how long no queued byte is written (RFC 9622
// §8.1.3), before and during a Close; without it, Close waits (§10) and
// Abort ends the wait. On QUIC (keep-alives acknowledged, so no idle
// timeout) only gotaps' own watch ends such a connection; on TCP a Linux
// kernel's TCP_USER_TIMEOUT, which counts zero-window probes, usually
// ends it first, with the same error: the TCP tests hold that contract and
// that a slow reader is not failed.

// stoppedReader is a TCP Connection whose raw peer reads nothing until
// the test lets it.
type stoppedReader struct {
	c    *Connection
	peer net.Conn
	sent int // bytes of the Sends that returned Sent
}

// newStoppedReader initiates a Connection (tcp, a 64 KiB send queue, the
// properties tp) to a raw peer with a small receive buffer that does not
// read.
func newStoppedReader(t *testing.T, sys *System, tp *TransportProperties) *stoppedReader {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = setRcvBuf(fd, 4096) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(testCtx(t), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	r := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ln.Addr().(*net.TCPAddr).AddrPort().Port())
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(r),
		WithTransportProperties(tp), WithSendBuffer(64<<10)).Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	return &stoppedReader{c: c, peer: peer}
}

// fill sends until a Send is not Sent within 300 ms: the socket's buffers
// are full, and that message waits in gotaps' queue. It returns when the
// last Send returned Sent.
func (sr *stoppedReader) fill(t *testing.T) time.Time {
	t.Helper()
	chunk := bytes.Repeat([]byte("f"), 16<<10)
	var last time.Time
	for {
		ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
		err := sr.c.Send(ctx, chunk, nil)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return last
		}
		require.NoError(t, err)
		sr.sent += len(chunk)
		last = time.Now()
	}
}

// queue hands n more messages over without waiting; their events come on
// the returned channel.
func (sr *stoppedReader) queue(n int) <-chan error {
	events := make(chan error, n)
	for range n {
		sr.c.SendAsync(bytes.Repeat([]byte("q"), 4<<10), nil, func(_ *Connection, err error) { events <- err })
	}
	return events
}

// awaitEnd waits (generously) for the Connection to end.
func awaitEnd(t *testing.T, c *Connection, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the Connection did not end", what)
	}
}

// requireTimedOut checks that err is a ConnectionError (or, for a queued
// message, a SendError) for connTimeout: it unwraps to
// syscall.ETIMEDOUT, as the kernel's TCP_USER_TIMEOUT does.
func requireTimedOut(t *testing.T, err error, what string) {
	t.Helper()
	require.ErrorIs(t, err, syscall.ETIMEDOUT, what)
	require.NotErrorIs(t, err, ErrAborted, what)
}

func connTimeoutProps(t *testing.T, d time.Duration) *TransportProperties {
	t.Helper()
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(ConnTimeout, d))
	return tp
}

// newStoppedQUICReader initiates a QUIC Connection with tp to a QUIC
// Listener whose Connection never Receives and has a 16 KiB receive
// buffer: once that is full the stream's flow control stops the sender,
// while the peer's QUIC stack still acknowledges every packet (keep-alives
// included), so QUIC's idle timeout does not end it.
func newStoppedQUICReader(t *testing.T, sys *System, tp *TransportProperties) *stoppedReader {
	t.Helper()
	pki := newTestPKI(t)
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(quicOnly(t)),
		WithReceiveBuffer(16<<10), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	pre := securePre(sys, ln, pki.clientSec(), tp)
	WithSendBuffer(64 << 10)(pre)
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil)) // the stream opens with its first data
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(s.Abort)
	return &stoppedReader{c: c}
}

// quicKeepAliveProps requires QUIC, with connTimeout d and keep-alives
// every d/4 (they keep the QUIC connection itself alive).
func quicKeepAliveProps(t *testing.T, d time.Duration) *TransportProperties {
	t.Helper()
	tp := quicOnly(t)
	require.NoError(t, tp.Set(ConnTimeout, d))
	require.NoError(t, tp.Set(KeepAliveTimeout, d/4))
	return tp
}

// stoppedReaders are the peers that stop reading: a TCP one (the kernel's
// TCP_USER_TIMEOUT, which counts zero-window probes, may end it first) and
// a QUIC one whose connection stays alive (keep-alives are acknowledged),
// which gotaps' own bound alone ends.
var stoppedReaders = []struct {
	name string
	make func(t *testing.T, sys *System, connTimeout time.Duration) *stoppedReader
}{
	{"TCP", func(t *testing.T, sys *System, d time.Duration) *stoppedReader {
		return newStoppedReader(t, sys, connTimeoutProps(t, d))
	}},
	{"QUIC", func(t *testing.T, sys *System, d time.Duration) *stoppedReader {
		return newStoppedQUICReader(t, sys, quicKeepAliveProps(t, d))
	}},
}

// TestCloseTimeoutEndsCloseToStoppedReader: with connTimeout set, a Close
// whose queued messages cannot be written (the peer stopped reading)
// ends with a ConnectionError for the timeout once no byte was written for
// connTimeout, not never (on QUIC it stayed Closing for ever); the
// messages still queued get SendErrors for the same timeout.
func TestCloseTimeoutEndsCloseToStoppedReader(t *testing.T) {
	for _, r := range stoppedReaders {
		t.Run(r.name, func(t *testing.T) {
			sys := newTestSystem(t)
			const connTimeout = time.Second
			sr := r.make(t, sys, connTimeout)
			lastSent := sr.fill(t)
			events := sr.queue(4)
			require.NoError(t, sr.c.Close())
			awaitEnd(t, sr.c, "Close with connTimeout")
			require.GreaterOrEqual(t, time.Since(lastSent), connTimeout, "the Connection failed before connTimeout passed without progress")
			var ce *ConnectionError
			require.ErrorAs(t, sr.c.Err(), &ce)
			requireTimedOut(t, sr.c.Err(), "the ConnectionError")
			for i := range 4 {
				err := <-events
				var se *SendError
				require.ErrorAs(t, err, &se, "queued message %d", i)
				requireTimedOut(t, err, "queued message's SendError")
			}
		})
	}
}

// TestConnTimeoutFailsEstablishedStoppedReader: with connTimeout set, an
// Established Connection whose queued data is not written for connTimeout
// fails with a ConnectionError for the timeout (ReasonTimeout; no Close
// needed), and a
// blocking Send waiting on it returns a SendError for it (on QUIC both
// once waited for ever).
func TestConnTimeoutFailsEstablishedStoppedReader(t *testing.T) {
	for _, r := range stoppedReaders {
		t.Run(r.name, func(t *testing.T) {
			sys := newTestSystem(t)
			const connTimeout = time.Second
			sr := r.make(t, sys, connTimeout)
			lastSent := sr.fill(t)
			sendErr := make(chan error, 1)
			go func() { sendErr <- sr.c.Send(context.Background(), []byte("blocked"), nil) }()
			awaitEnd(t, sr.c, "Established with connTimeout")
			require.GreaterOrEqual(t, time.Since(lastSent), connTimeout)
			var ce *ConnectionError
			require.ErrorAs(t, sr.c.Err(), &ce)
			require.Equal(t, ReasonTimeout, ce.Reason)
			requireTimedOut(t, sr.c.Err(), "the ConnectionError")
			err := <-sendErr
			var se *SendError
			require.ErrorAs(t, err, &se)
			requireTimedOut(t, err, "the blocked Send")
		})
	}
}

// TestCloseWithoutConnTimeoutWaitsAndAbortEndsIt: without connTimeout
// (Disabled, the default) a Close to a peer that stopped reading waits for
// delivery (RFC 9622 §10); Abort ends it at once, its queued messages with
// SendErrors for the abort.
func TestCloseWithoutConnTimeoutWaitsAndAbortEndsIt(t *testing.T) {
	sys := newTestSystem(t)
	sr := newStoppedReader(t, sys, NewTransportProperties())
	sr.fill(t)
	events := sr.queue(4)
	require.NoError(t, sr.c.Close())
	// Closing goes on: three times what the other tests' connTimeout is
	select {
	case <-sr.c.Done():
		t.Fatalf("Close without connTimeout ended while the peer read nothing: %v", sr.c.Err())
	case <-time.After(3 * time.Second):
	}
	require.Equal(t, StateClosing, sr.c.State())
	start := time.Now()
	sr.c.Abort()
	awaitEnd(t, sr.c, "Abort of a stuck Close")
	require.Less(t, time.Since(start), 10*time.Second)
	var ce *ConnectionError
	require.ErrorAs(t, sr.c.Err(), &ce)
	require.ErrorIs(t, sr.c.Err(), ErrAborted)
	for i := range 4 {
		err := <-events
		var se *SendError
		require.ErrorAs(t, err, &se, "queued message %d", i)
		require.ErrorIs(t, err, ErrAborted, "queued message %d", i)
	}
}

// kernelsZeroWindowTimeout skips a slow-reader test whose connection the
// kernel's TCP_USER_TIMEOUT ended (a write failed with ETIMEDOUT), not
// gotaps' own watch of its blocked writes (errWriteStalled: "no queued
// byte written"): Linux counts zero-window probing against the user
// timeout from its first probe until the peer's window opens wide enough
// for the whole next queued segment, which a 4 KiB receive buffer read
// 1 KiB at a time rarely does (about 1 run in 60 met it; see connTimeout's
// doc). What the test is about, gotaps' own watch, did not fail it.
func kernelsZeroWindowTimeout(t *testing.T, err error) {
	t.Helper()
	if err != nil && errors.Is(err, syscall.ETIMEDOUT) && !strings.Contains(err.Error(), "no queued byte written") {
		t.Skipf("the kernel's TCP_USER_TIMEOUT ended the connection in zero-window probing, not gotaps' watch: %v", err)
	}
}

// TestConnTimeoutKeepsSlowReader: a peer that reads slowly (far less than
// the socket's buffers per connTimeout, but steadily) keeps the Connection
// up however long that takes: only a write that makes no progress at all
// for connTimeout fails it. Once the peer reads at speed, everything sent
// arrives and Close completes.
func TestConnTimeoutKeepsSlowReader(t *testing.T) {
	sys := newTestSystem(t)
	const connTimeout = 2 * time.Second
	sr := newStoppedReader(t, sys, connTimeoutProps(t, connTimeout))
	sr.fill(t)
	events := sr.queue(4)
	// 1 KiB every 50 ms (20 KiB/s) for 3 connTimeouts
	buf := make([]byte, 1<<10)
	got := 0
	tick := time.NewTicker(50 * time.Millisecond)
	for deadline := time.Now().Add(3 * connTimeout); time.Now().Before(deadline); {
		<-tick.C
		n, err := sr.peer.Read(buf)
		if err != nil {
			kernelsZeroWindowTimeout(t, sr.c.Err())
		}
		require.NoError(t, err, "the peer's read (%d bytes read); the Connection: %v", got, sr.c.Err())
		got += n
	}
	tick.Stop()
	select {
	case <-sr.c.Done():
		kernelsZeroWindowTimeout(t, sr.c.Err())
		t.Fatalf("a slow reader (%d bytes read) was failed: %v", got, sr.c.Err())
	default:
	}
	require.NoError(t, sr.c.Close())
	rest, err := io.ReadAll(sr.peer)
	require.NoError(t, err)
	require.Equal(t, sr.sent+16<<10+4*4<<10, got+len(rest), "every byte sent arrives")
	for i := range 4 {
		require.NoError(t, <-events, "queued message %d", i)
	}
	require.NoError(t, sr.peer.Close())
	awaitEnd(t, sr.c, "Close after the peer read everything")
	require.NoError(t, sr.c.Err())
}
