package actors

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/stretchr/testify/require"
)

// rejoinHarness runs a connActor waiting to rejoin its group's session
// (rejoinWait, no transport) as an actor: it gets the messages of
// rejoin.go and the system messages of a watch; group is a probe that
// records the sessionRejoin requests.
func rejoinHarness(t *testing.T, sys *System) (waiter *actor.PID, asked chan *sessionRejoin) {
	t.Helper()
	waiter, asked, _ = rejoinHarnessFull(t, sys, true)
	return waiter, asked
}

// rejoinHarnessFull is rejoinHarness that also returns the rejoinSession
// messages the group probe gets; waiting false makes a member that no
// longer waits (it got its transport, or never asked).
func rejoinHarnessFull(t *testing.T, sys *System, waiting bool) (waiter *actor.PID, asked chan *sessionRejoin, sessions chan *rejoinSession) {
	t.Helper()
	asked = make(chan *sessionRejoin, 4)
	sessions = make(chan *rejoinSession, 4)
	group := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *sessionRejoin:
			asked <- m
		case *rejoinSession:
			sessions <- m
		}
	}))
	c := &connActor{sys: sys, state: Establishing, rejoinWait: waiting, multistream: true,
		spec: &connSpec{id: 1, group: group}, dir: Bidirectional}
	waiter = sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			c.spec.self = ctx.Self()
		case *actor.Stopping, *actor.Stopped, *actor.Restarting:
			// the harness has no link nor transport to release
		default:
			c.Receive(ctx)
		}
	}))
	t.Cleanup(func() {
		sys.AS.Root.Stop(waiter)
		sys.AS.Root.Stop(group)
	})
	return waiter, asked, sessions
}

// A member told to dial (rejoinDial) that no longer waits, the answer to a
// second request of its own, declines: the group does not keep it as a
// leader whose session its waiters would wait for in vain.
func TestRejoinDialNotWaitingDeclines(t *testing.T) {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	waiter, _, sessions := rejoinHarnessFull(t, sys, false) // its first answer gave it a stream
	sys.AS.Root.Send(waiter, &rejoinDial{})                 // the second answer: dial
	select {
	case m := <-sessions:
		require.True(t, m.from.Equal(waiter))
		require.True(t, m.declined, "the lead is declined, not reported as a session")
	case <-time.After(5 * time.Second):
		t.Fatal("the member did not decline the lead")
	}
}

// A waiter sent to open its stream on a member that ends before answering
// its OpenStream (an ended connection does not answer it, and Stop drops
// it from the mailbox) asks its group again, naming that member: it is
// not left waiting for ever. Likewise when that member is gone already
// (the request is a dead letter).
func TestRejoinViaEndedMemberAsksAgain(t *testing.T) {
	for _, gone := range []bool{true, false} {
		sys := NewSystem(Config{})
		t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
		waiter, asked := rejoinHarness(t, sys)
		opened := make(chan struct{}, 1)
		via := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if _, ok := ctx.Message().(*OpenStream); ok {
				opened <- struct{}{}
				ctx.Stop(ctx.Self()) // ends without an answer
			}
		}))
		if gone {
			require.NoError(t, sys.AS.Root.StopFuture(via).Wait())
		}
		sys.AS.Root.Send(waiter, &rejoinVia{via: via})
		if !gone {
			select {
			case <-opened:
			case <-time.After(5 * time.Second):
				t.Fatal("no OpenStream at the member")
			}
		}
		select {
		case m := <-asked:
			require.True(t, m.from.Equal(waiter), "gone=%v: from the waiter", gone)
			require.True(t, m.failedVia.Equal(via), "gone=%v: naming the member that ended", gone)
		case <-time.After(5 * time.Second):
			t.Fatalf("gone=%v: the waiter did not ask its group again", gone)
		}
		// a stream the member answered before it ended comes too late:
		// the waiter asked its group again, and the stream is aborted
		a, b := net.Pipe()
		late := &pipeTransport{Conn: a, peer: b}
		sys.AS.Root.Send(waiter, &StreamOpened{T: late, Stack: "quic"})
		aborted := make(chan struct{})
		go func() { _, _ = b.Read(make([]byte, 1)); close(aborted) }()
		select {
		case <-aborted:
		case <-time.After(5 * time.Second):
			t.Fatalf("gone=%v: the late stream was not aborted", gone)
		}
		require.True(t, late.closed.Load(), "gone=%v: the late stream is aborted", gone)
	}
}

// A stream opened for a requester that is gone (its reply is a dead
// letter) is aborted: it would keep its QUIC session open.
func TestStreamOpenedToNobodyIsAborted(t *testing.T) {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	gone := sys.AS.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	require.NoError(t, sys.AS.Root.StopFuture(gone).Wait())
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	stream := &pipeTransport{Conn: a, peer: b}
	sys.AS.Root.Send(gone, &StreamOpened{T: stream, Stack: "quic"})
	aborted := make(chan struct{})
	go func() { _, _ = b.Read(make([]byte, 1)); close(aborted) }()
	select {
	case <-aborted:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream sent to nobody was not aborted")
	}
	require.True(t, stream.closed.Load())
}

// A waiter that leaves the group (a CloneError) while the leader dials is
// told to dial alone: in a group of its own, it does not open its stream
// on the group's session.
func TestRejoinWaiterThatLeavesDialsAlone(t *testing.T) {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	probe := func() (*actor.PID, chan any) {
		got := make(chan any, 4)
		pid := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *rejoinDial, *rejoinVia, *rejoinRetry:
				got <- m
			}
		}))
		t.Cleanup(func() { sys.AS.Root.Stop(pid) })
		return pid, got
	}
	leader, leaderGot := probe()
	waiter, waiterGot := probe()
	// both lost their transports (Establishing)
	g := &groupActor{sys: sys, members: []GroupMember{{PID: leader, Link: NewLink(1, 0, 0, true)}, {PID: waiter, Link: NewLink(2, 0, 0, true)}}}
	group := sys.AS.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
	t.Cleanup(func() { sys.AS.Root.Stop(group) })
	sys.AS.Root.Send(group, &sessionRejoin{from: leader})
	require.IsType(t, &rejoinDial{}, awaitMsg(t, leaderGot, "the first to ask dials"))
	sys.AS.Root.Send(group, &sessionRejoin{from: waiter}) // waits for the leader's session
	sys.AS.Root.Send(group, &leaveGroup{who: waiter})
	require.IsType(t, &rejoinDial{}, awaitMsg(t, waiterGot, "the member that left dials alone"))
}

// A member due to rejoin while no leader dials and no session was
// re-established (the peer reset its stream alone) is sent to open its
// stream on a member still Established; when that fails (failedVia), it
// dials, and is not sent to a live member again.
func TestRejoinAloneOpensOnALiveMembersSession(t *testing.T) {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	got := make(chan any, 4)
	lost := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *rejoinDial, *rejoinVia, *rejoinRetry:
			got <- m
		}
	}))
	live := sys.AS.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	t.Cleanup(func() { sys.AS.Root.Stop(lost); sys.AS.Root.Stop(live) })
	liveLink := NewLink(2, 0, 0, true)
	liveLink.setState(Established)
	g := &groupActor{sys: sys, members: []GroupMember{{PID: lost, Link: NewLink(1, 0, 0, true)}, {PID: live, Link: liveLink}}}
	group := sys.AS.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
	t.Cleanup(func() { sys.AS.Root.Stop(group) })
	await := func(what string) any {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatalf("no message: %s", what)
			return nil
		}
	}
	sys.AS.Root.Send(group, &sessionRejoin{from: lost})
	m := await("the live member's session")
	require.IsType(t, &rejoinVia{}, m)
	require.True(t, m.(*rejoinVia).via.Equal(live))
	sys.AS.Root.Send(group, &sessionRejoin{from: lost, failedVia: live})
	require.IsType(t, &rejoinDial{}, await("dial once the live session failed"))
}

// When the leader ends having dialed the last attempt its policy allows,
// with that attempt's failure, its waiters end with it (rejoinGiveUp): the
// group's attempts are spent. A leader that ended otherwise (closed by
// the application) or before its last attempt hands the lead on
// (rejoinRetry).
func TestRejoinWaitersGiveUpWithALeaderThatSpentItsAttempts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		last, close bool
		want        any
	}{
		{"spent", true, false, &rejoinGiveUp{}},
		{"closed on its last attempt", true, true, &rejoinRetry{}},
		{"attempts left", false, false, &rejoinRetry{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := NewSystem(Config{})
			t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
			got := make(chan any, 4)
			leader := sys.AS.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
			waiter := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				switch m := ctx.Message().(type) {
				case *rejoinDial, *rejoinVia, *rejoinRetry, *rejoinGiveUp:
					got <- m
				}
			}))
			t.Cleanup(func() { sys.AS.Root.Stop(leader); sys.AS.Root.Stop(waiter) })
			leaderLink := NewLink(1, 0, 0, true)
			g := &groupActor{sys: sys, alive: 2, members: []GroupMember{{PID: leader, Link: leaderLink}, {PID: waiter, Link: NewLink(2, 0, 0, true)}}}
			group := sys.AS.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
			t.Cleanup(func() { sys.AS.Root.Stop(group) })
			sys.AS.Root.Send(group, &sessionRejoin{from: leader, last: tc.last})
			sys.AS.Root.Send(group, &sessionRejoin{from: waiter})
			if tc.close {
				leaderLink.MarkCloseCalled()
			}
			failure := &EstablishmentFailure{Err: errors.New("unreachable")}
			leaderLink.emitTerminal(EvConnectionError, failure)
			sys.AS.Root.Send(group, &actor.Terminated{Who: leader})
			select {
			case m := <-got:
				require.IsType(t, tc.want, m)
				if gu, ok := m.(*rejoinGiveUp); ok {
					require.ErrorIs(t, gu.err, failure)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the waiter got no answer")
			}
		})
	}
}

// A group gives up together: once the member dialing its new session has
// spent its attempts, a member that had lost its transport before (it was
// Ready, and is re-establishing) ends with it even when it asks only
// after (its backoff was due later, or it found the loss later): the
// group's attempts are spent, and it must not dial a row of its own. A
// member whose transport was still up as the group gave up, and fails
// only later, starts a row of its own (rejoinDial).
func TestRejoinMemberLostBeforeTheGroupGaveUpEndsWithIt(t *testing.T) {
	gs := groupGaveUp(t)
	gs.laterLink.setState(Establishing) // lost only now: no member is live
	gs.sys.AS.Root.Send(gs.group, &sessionRejoin{from: gs.late})
	m := gs.await(gs.lateGot, "the member lost before the group gave up")
	require.IsType(t, &rejoinGiveUp{}, m, "it ends with the group")
	require.ErrorIs(t, m.(*rejoinGiveUp).err, gs.failure)
	gs.sys.AS.Root.Send(gs.group, &sessionRejoin{from: gs.later})
	require.IsType(t, &rejoinDial{}, gs.await(gs.laterGot, "the member lost after the group gave up"), "a row of its own")
}

// A member lost with a group that gave up, which asks while another
// member's new row dials (it waits for it) and opens its stream on that
// new session, is up again: when it loses that one later, it is no longer
// one lost with the group (rejoinState.lost), and dials a row of its own.
// It stayed in the list, and ended with the old row's failure at once.
func TestRejoinMemberLostWithTheGroupThatRejoinedIsNotLostAgain(t *testing.T) {
	gs := groupGaveUp(t)
	root := gs.sys.AS.Root
	gs.laterLink.setState(Establishing) // lost after the give-up: a row of its own
	root.Send(gs.group, &sessionRejoin{from: gs.later})
	require.IsType(t, &rejoinDial{}, gs.await(gs.laterGot, "later dials"))
	root.Send(gs.group, &sessionRejoin{from: gs.late}) // waits for later's row
	root.Send(gs.group, &rejoinSession{from: gs.later})
	gs.laterLink.setState(Established)
	via := gs.await(gs.lateGot, "late, waiting for later's row")
	require.IsType(t, &rejoinVia{}, via, "it opens its stream on later's session")
	require.True(t, via.(*rejoinVia).via.Equal(gs.later))
	gs.lateLink.setState(Established)

	// that session is lost: late cannot open a stream on it, nor is
	// anything else live
	gs.laterLink.setState(Establishing)
	gs.lateLink.setState(Establishing)
	root.Send(gs.group, &sessionRejoin{from: gs.late, failedVia: gs.later})
	require.IsType(t, &rejoinDial{}, gs.await(gs.lateGot, "late, lost again"),
		"a later loss: a row of its own, not the old row's failure")
}

// gaveUpGroup is a group of three whose leader gave up, its attempts
// spent (failure), while late had lost its transport and not asked yet
// and later was Established.
type gaveUpGroup struct {
	sys                 *System
	group, late, later  *actor.PID
	lateGot, laterGot   chan any
	lateLink, laterLink *Link
	failure             error
	await               func(ch chan any, what string) any
}

// groupGaveUp makes a gaveUpGroup: the answers to late and later come on
// lateGot and laterGot.
func groupGaveUp(t *testing.T) *gaveUpGroup {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	probe := func() (*actor.PID, chan any) {
		got := make(chan any, 4)
		pid := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *rejoinDial, *rejoinVia, *rejoinRetry, *rejoinGiveUp:
				got <- m
			}
		}))
		t.Cleanup(func() { sys.AS.Root.Stop(pid) })
		return pid, got
	}
	readyLink := func(id uint64, st State) *Link {
		l := NewLink(id, 0, 0, true)
		l.emitReady()
		l.setState(st)
		return l
	}
	leader, _ := probe()
	late, lateGot := probe()
	later, laterGot := probe()
	leaderLink := readyLink(1, Establishing)
	lateLink := readyLink(2, Establishing)
	laterLink := readyLink(3, Established) // its transport is up as the group gives up
	g := &groupActor{sys: sys, alive: 3, members: []GroupMember{{PID: leader, Link: leaderLink},
		{PID: late, Link: lateLink}, {PID: later, Link: laterLink}}}
	group := sys.AS.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
	t.Cleanup(func() { sys.AS.Root.Stop(group) })
	// the leader could not open its stream on later's session (failedVia):
	// it dials
	sys.AS.Root.Send(group, &sessionRejoin{from: leader, failedVia: later, last: true})
	failure := &EstablishmentFailure{Err: errors.New("unreachable")}
	leaderLink.emitTerminal(EvConnectionError, failure)
	sys.AS.Root.Send(group, &actor.Terminated{Who: leader})
	// the group has given up once the Terminated is handled: a request
	// answered after it was
	_, err := sys.AS.Root.RequestFuture(group, &messages.ListGroupMembers{}, 5*time.Second).Result()
	require.NoError(t, err)
	return &gaveUpGroup{sys: sys, group: group, late: late, later: later, lateGot: lateGot, laterGot: laterGot,
		lateLink: lateLink, laterLink: laterLink, failure: failure,
		await: func(ch chan any, what string) any { return awaitMsg(t, ch, what) }}
}

// awaitMsg is the next message on ch, failing the test after 5 s.
func awaitMsg(t *testing.T, ch chan any, what string) any {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no message: %s", what)
		return nil
	}
}
