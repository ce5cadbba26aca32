package stacks

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lateSwitch delays the next migrations between the answered probe and
// the switch (the migrating goroutine descheduled, as under load) long
// enough for quic-go to have nothing left to do (the server's ACK of the
// probe read, no timer pending): it then switches only at its next
// wake-up.
func lateSwitch(t *testing.T) {
	hook := func() { time.Sleep(300 * time.Millisecond) } // the scenario: a late switch
	testHookMigrateProbed.Store(&hook)
	t.Cleanup(func() { testHookMigrateProbed.Store(nil) })
}

// serverSends writes each text on the server's stream; the client reads
// it within a bound far shorter than the idle timeout (30 s).
func serverSends(t *testing.T, cli *quicStream, ss *quic.Stream, texts ...string) {
	t.Helper()
	for _, text := range texts {
		_, err := ss.Write([]byte(text))
		require.NoError(t, err)
		require.NoError(t, cli.SetReadDeadline(time.Now().Add(8*time.Second)))
		buf := make([]byte, len(text))
		_, err = io.ReadFull(cli, buf)
		require.NoError(t, err, "the client reads %q", text)
		require.Equal(t, text, string(buf))
	}
}

// serverFollows: the server's connection moves to the client's new
// address (once it reads the client's ACK from there and validated it).
func serverFollows(t *testing.T, sc *quic.Conn, local net.Addr) {
	t.Helper()
	require.Eventually(t, func() bool { return sc.RemoteAddr().String() == local.String() }, 5*time.Second,
		10*time.Millisecond, "the server follows to %v (at %v)", local, sc.RemoteAddr())
}

func closed(s *net.UDPConn) bool { return errors.Is(s.SetDeadline(time.Time{}), net.ErrClosed) }

// TestQUICMigrateLateSwitchThenDownload: after a migration quic-go
// switches late, and only the server sends: the client reads it all (its
// old socket reads the server's packets, which wake quic-go, and quic-go
// acknowledges them from the new path), and the server follows to the
// new address. Before the old socket read until the switch, the client
// read nothing until the idle timeout.
func TestQUICMigrateLateSwitchThenDownload(t *testing.T) {
	ctx := testCtx(t)
	_, cli, sc, ss := migrationPeer(t, ctx, netip.Addr{})
	echoOnce(t, cli, ss, "before")
	lateSwitch(t)
	local, err := cli.Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
	require.NoError(t, err)
	serverSends(t, cli, ss, "one", "two", "three")
	serverFollows(t, sc, local)
}

// TestQUICMigrateLateSwitchIdleThenDownload: after a migration quic-go
// switches late, and nothing is sent either way for longer than
// quicDrainTime: the old socket still reads (quic-go has not switched),
// the server's data sent then arrive, and the old socket is closed
// quicDrainTime after quic-go switched.
func TestQUICMigrateLateSwitchIdleThenDownload(t *testing.T) {
	ctx := testCtx(t)
	_, cli, sc, ss := migrationPeer(t, ctx, netip.Addr{})
	echoOnce(t, cli, ss, "before")
	old := cli.udpSocket()
	lateSwitch(t)
	local, err := cli.Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
	require.NoError(t, err)
	time.Sleep(quicDrainTime + time.Second) // the scenario: idle longer than the drain
	assert.False(t, closed(old), "the old socket reads until quic-go switches")
	serverSends(t, cli, ss, "late", "later")
	serverFollows(t, sc, local)
	start := time.Now()
	require.Eventually(t, func() bool { return closed(old) }, quicDrainTime+3*time.Second, 20*time.Millisecond,
		"the old socket is closed once drained")
	require.Greater(t, time.Since(start), quicDrainTime/2, "it drained")
	serverSends(t, cli, ss, "after the drain")
}

// TestQUICMigrateEndClosesWaitingSocketAtOnce: the connection's end closes
// an old socket still waiting for quic-go's switch at once.
func TestQUICMigrateEndClosesWaitingSocketAtOnce(t *testing.T) {
	ctx := testCtx(t)
	_, cli, _, ss := migrationPeer(t, ctx, netip.Addr{})
	echoOnce(t, cli, ss, "before")
	old := cli.udpSocket()
	lateSwitch(t)
	_, err := cli.Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
	require.NoError(t, err)
	require.False(t, closed(old), "the old socket waits for quic-go's switch")
	require.NoError(t, cli.Abort())
	waitQUICDone(t, cli)
	require.True(t, closed(old), "closed with the connection")
	require.True(t, closed(cli.udpSocket()))
}
