package taps

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQUICConnTimeoutOfASilentPeerIsATimeout: a QUIC connection whose
// peer goes silent (a relay on loopback stops forwarding both ways, so
// not even a CONNECTION_CLOSE gets through) ends once connTimeout (the
// QUIC idle timeout) passes, keep-alives or not, with a ConnectionError
// with ReasonTimeout that unwraps to syscall.ETIMEDOUT, as TCP's
// connTimeout (TCP_USER_TIMEOUT) does (requireTimedOut), and is still a
// net.Error whose Timeout is true.
func TestQUICConnTimeoutOfASilentPeerIsATimeout(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln, accepted := quicEchoServer(t, sys, pki, quicOnly(t))
	const idle = 600 * time.Millisecond
	tp := quicOnly(t)
	require.NoError(t, tp.Set(ConnTimeout, idle))
	require.NoError(t, tp.Set(KeepAliveTimeout, idle/4)) // the peer answers until it is silenced
	require.NoError(t, tp.Require(KeepAlive))
	relay, pre := relayedPre(t, sys, pki, tp, ln)
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	roundTrip(t, c, "before the silence")
	s := <-accepted
	t.Cleanup(s.Abort)

	relay.arm() // from now on nothing passes either way
	silenced := time.Now()
	for _, end := range []struct {
		c    *Connection
		what string
	}{{c, "the initiator"}, {s, "the accepted side (the idle timeout negotiated)"}} {
		awaitEnd(t, end.c, end.what)
		if end.c == c {
			require.GreaterOrEqual(t, time.Since(silenced), idle/2, "ended by the idle timeout, not at once")
		}
		err := end.c.Err()
		var ce *ConnectionError
		require.ErrorAs(t, err, &ce, end.what)
		require.Equal(t, ReasonTimeout, ce.Reason, end.what)
		requireTimedOut(t, err, end.what)
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "%s: a net.Error whose Timeout is true: %v", end.what, err)
	}
}
