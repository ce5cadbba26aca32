package stacks

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQUICReleasedWaitsForTheSessionsEnd: a dialed stream that is not
// its session's last is released at once; the last one, closed
// gracefully as the passive closer, leaves the session to its linger:
// Released is closed once the session has ended and its UDP socket is
// closed (the port can be bound at once).
func TestQUICReleasedWaitsForTheSessionsEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, accepted, cli := quicDial(t, ctx, Options{})
	defer func() { _ = ln.Close() }()
	_, err := cli.Write([]byte("a"))
	require.NoError(t, err)
	srv := awaitAccepted(t, ctx, accepted, "the first stream")
	other, err := cli.(MultiStream).OpenStream(ctx)
	require.NoError(t, err)
	local := cli.LocalAddr().(*net.UDPAddr)

	require.NoError(t, other.Close())
	select {
	case <-other.(ReleaseWatcher).Released():
	default:
		t.Fatal("a stream that is not its session's last holds the socket")
	}
	require.NoError(t, cli.Close()) // its FIN first, the peer's unread: the linger
	rel := cli.(ReleaseWatcher).Released()
	select {
	case <-rel:
		t.Fatal("released while the session lingers")
	default:
	}
	select {
	case <-rel:
	case <-ctx.Done():
		t.Fatal("the lingering session never released its socket")
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Port: local.Port})
	require.NoError(t, err, "the socket of a released session is still open")
	require.NoError(t, pc.Close())
	require.NoError(t, srv.Abort())
	waitQUICDone(t, srv)
}
