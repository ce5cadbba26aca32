package actors

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// The connTimeout watch of blocked writes (write_stall.go), on the fake
// stack's pipe (no kernel timeout of its own), in fake time: the bounds
// are exact.

// stallConn is a connection on the fake stack whose peer reads only when
// the test does.
type stallConn struct {
	sys  *System
	link *Link
	conn *actor.PID
	peer io.Reader
	send func(data []byte) <-chan error
}

func newStallConn(t *testing.T, sys *System, connTimeout time.Duration) *stallConn {
	t.Helper()
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	fs := newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}})
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{fs},
		StackOptions: stacks.Options{ConnTimeout: connTimeout}}
	link := NewLink(sys.NewID(), 0, 0, false)
	res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	conn := res.(*ConnectionStarted).Conn
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())
	sc := &stallConn{sys: sys, link: link, conn: conn, peer: fs.transport(addr).peer}
	sc.send = func(data []byte) <-chan error {
		id := sys.NewID()
		ch := make(chan error, 1)
		require.True(t, link.ExpectSend(id, func(err error) { ch <- err }))
		sys.AS.Root.Send(conn, &messages.SendMessage{SendID: id, MessageID: id, Data: data, EndOfMessage: true,
			Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1}})
		return ch
	}
	return sc
}

// ended reports whether the connection has ended (after every goroutine
// of the bubble settled).
func (sc *stallConn) ended() bool {
	synctest.Wait()
	select {
	case <-sc.link.Done():
		return true
	default:
		return false
	}
}

// requireEndsAfter (in a synctest bubble) checks that the connection is
// still up just before d from now and has ended by d plus a quarter (the
// watch checks every d/4).
func (sc *stallConn) requireEndsAfter(t *testing.T, d time.Duration, msg string) {
	t.Helper()
	time.Sleep(d - time.Millisecond)
	require.False(t, sc.ended(), "failed before connTimeout passed without progress")
	time.Sleep(d/4 + 2*time.Millisecond)
	require.True(t, sc.ended(), msg)
}

// TestWriteStallFailsCloseAfterConnTimeout: a Close whose queued message
// the peer does not read ends once nothing was written for connTimeout
// (within a quarter more), with a failure unwrapping to ETIMEDOUT; the
// message gets its SendError with it.
func TestWriteStallFailsCloseAfterConnTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		const d = 10 * time.Second
		sc := newStallConn(t, sys, d)
		sent := sc.send(bytes.Repeat([]byte("x"), 64<<10)) // nobody reads: its write blocks
		synctest.Wait()
		sys.AS.Root.Send(sc.conn, &messages.CloseConnection{})
		sc.requireEndsAfter(t, d, "still Closing connTimeout after the last progress")
		require.ErrorIs(t, sc.link.Err(), syscall.ETIMEDOUT)
		require.ErrorIs(t, sc.link.Err(), errWriteStalled)
		require.ErrorIs(t, <-sent, syscall.ETIMEDOUT)
	})
}

// TestWriteStallProgressRestartsConnTimeout: a peer that reads slowly, a
// piece less often than every connTimeout would allow without progress
// but never stopping, keeps an Established connection up through many
// connTimeouts; once it stops reading, the connection fails connTimeout
// (within a quarter more) after its last read.
func TestWriteStallProgressRestartsConnTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		const d = 10 * time.Second
		sc := newStallConn(t, sys, d)
		const size = 32 * writeStallChunk
		sent := sc.send(bytes.Repeat([]byte("x"), size))
		synctest.Wait()
		// one piece every 0.9 connTimeout: 31 of 32 pieces, about 28 connTimeouts
		buf := make([]byte, writeStallChunk)
		for i := range 31 {
			time.Sleep(d * 9 / 10)
			require.False(t, sc.ended(), "a slow reader was failed after %d pieces: %v", i, sc.link.Err())
			_, err := io.ReadFull(sc.peer, buf)
			require.NoError(t, err)
		}
		// the reader stops: one piece is left unread
		sc.requireEndsAfter(t, d, "still up connTimeout after the last progress")
		require.ErrorIs(t, sc.link.Err(), syscall.ETIMEDOUT)
		require.ErrorIs(t, <-sent, syscall.ETIMEDOUT)
	})
}

// TestWriteStallWithoutConnTimeoutWaitsUntilAbort: without connTimeout a
// Close whose message the peer does not read stays Closing (fake hours);
// Abort ends it at once, and the message's SendError is the abort's.
func TestWriteStallWithoutConnTimeoutWaitsUntilAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		sc := newStallConn(t, sys, 0)
		sent := sc.send(bytes.Repeat([]byte("x"), 64<<10))
		synctest.Wait()
		sys.AS.Root.Send(sc.conn, &messages.CloseConnection{})
		time.Sleep(10 * time.Hour)
		require.False(t, sc.ended(), "Close without connTimeout ended: %v", sc.link.Err())
		require.Equal(t, Closing, sc.link.State())
		sys.AS.Root.Send(sc.conn, &messages.AbortConnection{})
		require.True(t, sc.ended(), "Abort did not end a Close waiting for its write")
		require.ErrorIs(t, sc.link.Err(), ErrAborted)
		require.ErrorIs(t, <-sent, ErrAborted)
	})
}

// TestWriteStallOfACompletedWriteIsForgotten: a write that completes
// before connTimeout leaves no watch behind: the connection stays up, idle,
// far beyond connTimeout, and its next blocked write gets a full
// connTimeout of its own.
func TestWriteStallOfACompletedWriteIsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		const d = 10 * time.Second
		sc := newStallConn(t, sys, d)
		sent := sc.send(bytes.Repeat([]byte("x"), 2*writeStallChunk))
		synctest.Wait()
		time.Sleep(d / 2)
		_, err := io.ReadFull(sc.peer, make([]byte, 2*writeStallChunk))
		require.NoError(t, err)
		require.NoError(t, <-sent)
		time.Sleep(5 * d)
		require.False(t, sc.ended(), "an idle connection failed: %v", sc.link.Err())
		sent = sc.send([]byte("y"))
		synctest.Wait()
		sc.requireEndsAfter(t, d, "the second write got less than connTimeout, or more than 1.25 of it")
		require.ErrorIs(t, <-sent, syscall.ETIMEDOUT)
	})
}
