package taps

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The stall these tests guard against (stacks' quicDrainTime): after a
// migration quic-go switches paths only when its run loop next wakes up,
// and the server follows only once it reads a non-probing packet from the
// new path. A client that sends nothing relies on the old socket reading
// the server's packets until then. On an idle loopback quic-go usually
// wakes on a timer of its own; stacks' TestQUICMigrateLateSwitch* tests
// make it switch late, deterministically.

// quicStallDrain is stacks' quicDrainTime (QUICMaxProbe): how long a
// socket the session migrated away from keeps reading once quic-go has
// switched.
const quicStallDrain = stacks.QUICMaxProbe

// quicDownloadPair is a client QUIC connection from 127.0.0.1 to a
// listener on 127.0.0.1, given 127.0.0.2, and the server's connection for
// it (the client wrote first, to open the stream).
func quicDownloadPair(t *testing.T, sys *System) (c, s *Connection) {
	t.Helper()
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln := quicListen(t, ctx, sys, pki, quicOnly(t))
	c = quicFrom(t, sys, ln, pki)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() {
		s.Abort()
		<-s.Done()
	})
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
	return c, s
}

// migrateAway removes c's local endpoint 127.0.0.1 (in use): the session
// migrates to 127.0.0.2. It returns the old local address.
func migrateAway(t *testing.T, c *Connection) (old netip.AddrPort) {
	t.Helper()
	ctx := testCtx(t)
	old = epAddr(t, ctx, c, true)
	require.Equal(t, "127.0.0.1", old.Addr().String())
	pathChange := make(chan struct{}, 4)
	c.OnPathChange(func(*Connection) { pathChange <- struct{}{} })
	require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	epAwait(t, ctx, pathChange, "PathChange")
	require.Equal(t, StateEstablished, c.State())
	require.Equal(t, "127.0.0.2", epAddr(t, ctx, c, true).Addr().String())
	return old
}

// serverFollows: s, the server's connection for c, moves to c's new
// local address (once it reads c's ACK from there and validated it).
func serverFollows(t *testing.T, c, s *Connection) {
	t.Helper()
	ctx := testCtx(t)
	local := epAddr(t, ctx, c, true)
	require.Eventually(t, func() bool { return epAddr(t, ctx, s, false) == local }, 5*time.Second,
		10*time.Millisecond, "the server follows to %v", local)
}

// download sends texts from s, each received by c within a bound far
// shorter than the session's idle timeout (30 s).
func download(t *testing.T, c, s *Connection, texts ...string) {
	t.Helper()
	for _, text := range texts {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		require.NoError(t, s.Send(ctx, []byte(text), nil))
		m, err := c.Receive(ctx)
		cancel()
		require.NoError(t, err, "the client receives %q", text)
		require.Equal(t, text, string(m.Data))
	}
}

// TestQUICMigrationThenDownloadOnly: after the client's session migrates
// (RemoveLocal of the local address in use), only the server sends: the
// client receives every message, also one sent after a pause longer than
// the old socket's drain, and the server's connection sees the client's
// new address. Before the fix the old socket was closed at once: quic-go
// had not switched yet (it does on its run loop's next wake-up), the
// server's packets went to the closed socket, nothing woke the client to
// send from the new path, the server never followed, and the client's
// Receive timed out.
func TestQUICMigrationThenDownloadOnly(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	sys := newTestSystem(t)
	c, s := quicDownloadPair(t, sys)
	old := migrateAway(t, c)
	download(t, c, s, "one", "two", "three")
	require.True(t, udpBound(t, old), "the old socket drains after quic-go's switch")
	time.Sleep(quicStallDrain + time.Second) // the scenario: idle longer than the drain
	download(t, c, s, "late")
	serverFollows(t, c, s)
	require.Eventually(t, func() bool { return !udpBound(t, old) }, 3*time.Second, 20*time.Millisecond,
		"the old socket is closed once drained")
}

// TestQUICMigrationThenIdleThenDownload: after the migration, nothing is
// sent either way for longer than the old socket's drain; then the server
// sends, and the client receives it. When both ends are closed, the
// client's two sockets are.
func TestQUICMigrationThenIdleThenDownload(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	sys := newTestSystem(t)
	c, s := quicDownloadPair(t, sys)
	fds := countFDs(t) // with the client's first socket
	old := migrateAway(t, c)
	time.Sleep(quicStallDrain + time.Second) // the scenario: idle longer than the drain
	download(t, c, s, "late", "later")
	serverFollows(t, c, s)
	c.Abort()
	<-c.Done()
	s.Abort()
	<-s.Done()
	require.False(t, udpBound(t, old), "closed with the connection")
	require.Eventually(t, func() bool { return countFDs(t) < fds }, 5*time.Second, 10*time.Millisecond,
		"fds: %d with the first socket, %d after", fds, countFDs(t))
}

// TestQUICMigrationDuringDownload: the client's session migrates while the
// server streams messages to it; the client receives every one.
func TestQUICMigrationDuringDownload(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	sys := newTestSystem(t)
	c, s := quicDownloadPair(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 400
	sent := make(chan error, 1)
	go func() {
		payload := make([]byte, 32<<10)
		for i := range n {
			payload[0] = byte(i)
			if err := s.Send(ctx, payload, nil); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for i := range n {
		if i == 20 {
			migrateAway(t, c)
		}
		rctx, rcancel := context.WithTimeout(ctx, 8*time.Second)
		m, err := c.Receive(rctx)
		rcancel()
		require.NoError(t, err, "message %d", i)
		require.Equal(t, byte(i), m.Data[0])
	}
	require.NoError(t, <-sent)
}
