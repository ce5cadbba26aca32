package taps

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Bug hunt over connection groups and connection properties (RFC 9622
// §7.4, §8.1).

// quicGroupServerPair starts a QUIC echo server with tp and a client
// connection to it; first is the server's end of the client's first
// stream.
func quicGroupServerPair(t *testing.T, tp *TransportProperties) (c, first *Connection, accepted <-chan *Connection) {
	t.Helper()
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln, accepted := quicEchoServer(t, sys, pki, tp)
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	roundTrip(t, c, "first stream")
	first = <-accepted
	return c, first, accepted
}

// TestGroupsHuntPeerStreamJoinsWithTheGroupsEntangledValues: a connection
// property set on a member after its QUIC session was accepted is
// entangled (RFC 9622 §7.4): a stream the peer opens later joins the group
// with the value the group has now, not the one the session started with.
func TestGroupsHuntPeerStreamJoinsWithTheGroupsEntangledValues(t *testing.T) {
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	c, first, accepted := quicGroupServerPair(t, tp)
	defer func() { c.AbortGroup(); <-c.Done() }()

	require.NoError(t, first.SetProperty(ConnScheduler, FCFS))
	v, _ := first.GetProperties().Get(ConnScheduler)
	require.Equal(t, FCFS, v)

	clone, err := c.Clone(testCtx(t))
	require.NoError(t, err)
	roundTrip(t, clone, "second stream")
	second := <-accepted
	group, err := first.GroupedConnections(testCtx(t))
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{first, second}, group)
	v, _ = second.GetProperties().Get(ConnScheduler)
	require.Equal(t, FCFS, v, "the peer's new stream has the group's connScheduler")
}

// TestGroupsHuntGroupConnLimitSetLiveIsHonoured: groupConnLimit set with
// SetProperty on the accepted side limits the streams the peer opens from
// then on (RFC 9622 §8.1.7), as it does when set before Listen.
func TestGroupsHuntGroupConnLimitSetLiveIsHonoured(t *testing.T) {
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	c, first, accepted := quicGroupServerPair(t, tp)
	defer func() { c.AbortGroup(); <-c.Done() }()
	ctx := testCtx(t)

	require.NoError(t, first.SetProperty(GroupConnLimit, 1)) // one more member the peer may open
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, clone, "second stream")
	<-accepted

	third, err := c.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, third.Send(ctx, []byte("refused"), nil))
	_, err = third.Receive(ctx)
	require.Error(t, err, "groupConnLimit 1: the peer's second new stream is refused")
	select {
	case s := <-accepted:
		t.Fatalf("a stream beyond groupConnLimit was delivered: connection %d", s.ID())
	default:
	}
}

// TestQUICPeerStreamsTurnedAwayAreRefused: a stream the peer opens that
// the group turns away, because its groupConnLimit is reached (RFC 9622
// §8.1.7) or it is closing (OnConnectionReceived: "while the group is
// closing new streams are refused"), is refused as one nobody would take
// is: the peer's Connection ends with a ConnectionError unwrapping to
// stacks.ErrStreamRefused (it was reset with the abort's code).
func TestQUICPeerStreamsTurnedAwayAreRefused(t *testing.T) {
	t.Run("groupConnLimit", func(t *testing.T) {
		tp := quicOnly(t)
		require.NoError(t, tp.Set(GroupConnLimit, 1)) // one more member the peer may open
		c, _, accepted := quicGroupServerPair(t, tp)
		t.Cleanup(c.AbortGroup)
		clone, err := c.Clone(testCtx(t))
		require.NoError(t, err)
		roundTrip(t, clone, "second stream")
		<-accepted
		requireCloneRefused(t, c, "beyond groupConnLimit")
	})
	t.Run("closing group", func(t *testing.T) {
		c, first, _ := quicGroupServerPair(t, quicOnly(t))
		t.Cleanup(c.AbortGroup)
		// first lingers, Closing, for c's end of stream (5 s), and the
		// session with it
		first.CloseGroup()
		requireCloneRefused(t, c, "to a closing group")
		require.Equal(t, StateClosing, first.State())
	})
}

// TestGroupsHuntCloneRacingCloseGroupDoesNotOutliveIt: a Clone that is
// under way as CloseGroup runs either fails at once or makes a connection
// that closes with the group: it never leaves a member open in a group
// that was closed (RFC 9622 §10: CloseGroup closes every member), and it
// never waits out its ctx because its request reached the group as the
// group stopped (a message to a stopping actor is dropped unanswered).
func TestGroupsHuntCloneRacingCloseGroupDoesNotOutliveIt(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	serveUntilEnd(t, accepted)
	made, failed := 0, 0
	for i := range 200 {
		c := dialTCP(t, sys, ln)
		type result struct {
			c   *Connection
			err error
		}
		res := make(chan result, 1)
		started := make(chan struct{})
		go func() {
			close(started)
			cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			clone, err := c.Clone(cctx)
			res <- result{clone, err}
		}()
		<-started
		t0 := time.Now()
		c.CloseGroup()
		r := <-res
		<-c.Done()
		require.NotErrorIs(t, r.err, context.DeadlineExceeded, "round %d: Clone waited out its ctx (took %v)", i, time.Since(t0))
		if r.err != nil {
			failed++
			continue
		}
		made++
		select {
		case <-r.c.Done():
		case <-time.After(5 * time.Second):
			st := r.c.State()
			r.c.Abort()
			<-r.c.Done()
			t.Fatalf("round %d: a clone made as CloseGroup ran is still %v 5 s later (%d made, %d failed before)", i, st, made, failed)
		}
	}
	t.Logf("clones made %d, failed %d", made, failed)
}

// TestGroupsHuntCloneAfterCloseGroupFails (coverage of correct behaviour,
// passes on the code before the hunt): a Clone issued once CloseGroup has
// returned fails, the original being closed already.
func TestGroupsHuntCloneAfterCloseGroupFails(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	serveUntilEnd(t, acceptAll(t, ln))
	for i := range 20 {
		c := dialTCP(t, sys, ln)
		c.CloseGroup()
		clone, err := c.Clone(testCtx(t))
		<-c.Done()
		if clone != nil {
			clone.Abort()
			<-clone.Done()
		}
		var ce *CloneError
		require.ErrorAs(t, err, &ce, "round %d", i)
	}
}

// serveUntilEnd reads every accepted connection until it ends, then
// aborts it (the server's ends close when the clients' do), until the test
// ends.
func serveUntilEnd(t *testing.T, accepted <-chan *Connection) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			var s *Connection
			select {
			case s = <-accepted:
			case <-ctx.Done():
				return
			}
			go func() {
				for {
					if _, err := s.Receive(context.Background()); err != nil {
						s.Abort()
						return
					}
				}
			}()
		}
	}()
}
