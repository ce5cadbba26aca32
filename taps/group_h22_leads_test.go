package taps

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// groupHolder is a System whose group actors can be held busy: once armed,
// the next group record traced (a member joining, say) blocks the group's
// turn, on the goroutine running it, until released. held is closed when
// that turn is held.
type groupHolder struct {
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func newGroupHolder(t *testing.T) (*System, *groupHolder) {
	h := &groupHolder{held: make(chan struct{}), release: make(chan struct{})}
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "group" && h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
	}))
	t.Cleanup(h.let)
	return sys, h
}

// let releases a held group (once).
func (h *groupHolder) let() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// CloseGroup and AbortGroup called on a member that has ended return once
// every other member of the group is Closing, as their doc says, also when
// the group is busy as they are called: the call waited for the group's
// answer or the end of the member it was called on, and that member had
// ended already, so it returned before the group had taken the request in.
func TestGroupsH22EndGroupOfAnEndedMemberWaitsForTheGroup(t *testing.T) {
	for _, abort := range []bool{false, true} {
		name := "CloseGroup"
		if abort {
			name = "AbortGroup"
		}
		t.Run(name, func(t *testing.T) {
			sys, h := newGroupHolder(t)
			ln := listenLoopback(t, sys, framers.NewLengthPrefix())
			echoServer(t, ln)
			ctx := testCtx(t)
			c := dial(t, sys, ln, framers.NewLengthPrefix())
			clone, err := c.Clone(ctx)
			require.NoError(t, err)
			require.NoError(t, c.Close())
			requireDone(t, c)
			<-c.link.Gone()
			// the group is held in a turn of its own (a third member joins)
			h.armed.Store(true)
			third := make(chan error, 1)
			go func() {
				cl, err := clone.Clone(ctx)
				if err == nil {
					cl.Abort()
					<-cl.Done()
				}
				third <- err
			}()
			<-h.held
			returned := make(chan ConnectionState, 1)
			go func() {
				if abort {
					c.AbortGroup()
				} else {
					c.CloseGroup()
				}
				returned <- clone.State() // as it returns
			}()
			var st ConnectionState
			select {
			case st = <-returned: // returned while the group was held
			case <-time.After(100 * time.Millisecond): // waiting for the group, as it should
				h.let()
				st = <-returned
			}
			h.let()
			require.GreaterOrEqual(t, st, StateClosing, "%s returned before the group's other member was Closing (%s)", name, st)
			<-third
			requireDone(t, clone)
		})
	}
}

// quicPeerStreamNotYetAccepted makes a QUIC session a Listener accepted
// (s, its first stream) and a second stream the peer opens on it, which
// has joined s's group and waits for Accept; id is its connection's.
func quicPeerStreamNotYetAccepted(t *testing.T) (ctx context.Context, ln *Listener, s *Connection, id uint64) {
	t.Helper()
	var serverGroup, joined atomic.Uint64
	joinedCh := make(chan struct{}, 1)
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if g := serverGroup.Load(); g != 0 && r.Kind == "group" && r.Event == "MemberJoined" && r.GroupID == g {
			joined.Store(r.ConnectionID)
			select {
			case joinedCh <- struct{}{}:
			default:
			}
		}
	}))
	pki := newTestPKI(t)
	ctx = testCtx(t)
	ln = quicListen(t, ctx, sys, pki, quicOnly(t))
	c, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.AbortGroup(); <-c.Done() })
	c.OnConnectionReceived(func(_, r *Connection) { r.Abort() }) // the server's clones
	s = streamAccepter(t, ctx, ln)(c, "first")
	serverGroup.Store(s.ID())
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, clone.Send(ctx, []byte("second"), nil))
	select {
	case <-joinedCh:
	case <-ctx.Done():
		t.Fatal("the peer's second stream did not join the group")
	}
	return ctx, ln, s, joined.Load()
}

// listedMember is the member of s's group whose connection is id, as
// GroupedConnections hands it out.
func listedMember(ctx context.Context, s *Connection, id uint64) (*Connection, error) {
	group, err := s.GroupedConnections(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range group {
		if m.ID() == id {
			return m, nil
		}
	}
	return nil, fmt.Errorf("connection %d not listed in %d's group", id, s.ID())
}

// A QUIC stream the peer opened on a session a Listener accepted is
// handed out twice: by GroupedConnections of another member, as soon as
// it has joined the group, and by the Listener (Accept) that receives it.
// The two are one Connection, in use on both goroutines at once: the
// Listener's hand-over wrote its accepted flag as Clone, called on the
// object GroupedConnections had returned, read it (a data race, -race).
func TestGroupsH22StreamListedBeforeItIsAcceptedIsOneConnection(t *testing.T) {
	ctx, ln, s, id := quicPeerStreamNotYetAccepted(t)
	listed := make(chan *Connection, 1)
	go func() {
		defer close(listed)
		m, err := listedMember(ctx, s, id)
		if err != nil {
			return
		}
		if cl, err := m.Clone(ctx); err == nil { // reads what Accept's hand-over writes
			cl.Abort()
			<-cl.Done()
		}
		listed <- m
	}()
	b, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { b.Abort(); <-b.Done() })
	m, ok := <-listed
	require.True(t, ok, "GroupedConnections did not list the peer's second stream")
	require.Same(t, b, m, "the Listener and GroupedConnections hand out one Connection")
}

// A handler the application sets on a peer's stream that
// GroupedConnections handed out before the Listener does stays set: the
// Listener's hand-over replaced every handler of the connection with the
// Preconnection's (none here), and the Connection's terminal event
// reached no handler.
func TestGroupsH22StreamListedBeforeItIsAcceptedKeepsItsHandlers(t *testing.T) {
	ctx, ln, s, id := quicPeerStreamNotYetAccepted(t)
	m, err := listedMember(ctx, s, id)
	require.NoError(t, err)
	ended := make(chan *Connection, 1)
	m.OnConnectionError(func(c *Connection, _ error) { ended <- c })
	b, err := ln.Accept(ctx)
	require.NoError(t, err)
	require.Same(t, m, b)
	b.Abort()
	requireDone(t, b)
	select {
	case c := <-ended:
		require.Same(t, b, c)
	default:
		t.Fatal("the OnConnectionError handler set before Accept was not called")
	}
}

// A Clone that meets its group's CloseGroup fails with ReasonNotCloneable
// whichever check sees the close (the Clone doc: a connection that cannot
// be cloned): the Connection's state, when CloseGroup came first, or the
// group, when the Clone was checked before it and reached the group after
// (the group's refusal was ReasonUnknown), or the group's end.
func TestGroupsH22CloneMeetingCloseGroupIsNotCloneable(t *testing.T) {
	sys := newTestSystem(t)
	ln, pre := secureSetup(t, sys, newTestPKI(t), func() *TransportProperties { return tlsOnlyProps(t) })
	// the peer does not end its side: a TLS Close lingers for it, so the
	// closing group runs on until AbortGroup
	serveEach(t, ln, func(ctx context.Context, s *Connection) { <-ctx.Done(); s.Abort() })
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	// two Clones of clone checked before the group closes
	req1, cfg1, err := clone.prepareClone(ctx)
	require.NoError(t, err)
	req2, cfg2, err := clone.prepareClone(ctx)
	require.NoError(t, err)
	// notCloneable checks a CloneError of ReasonNotCloneable unwrapping
	// to ErrClosed, and to a StateError (Closing or Closed) when stateErr
	notCloneable := func(err error, stateErr bool, what string) {
		t.Helper()
		var ce *CloneError
		require.ErrorAs(t, err, &ce, what)
		require.Equal(t, ReasonNotCloneable.String(), ce.Reason.String(), "%s: %v", what, err)
		require.ErrorIs(t, err, ErrClosed, what)
		var se *actors.StateError
		if stateErr {
			require.ErrorAs(t, err, &se, what)
			require.GreaterOrEqual(t, stateOf(se.State), StateClosing, what)
		}
	}
	c.CloseGroup()
	_, err = clone.Clone(ctx)
	notCloneable(err, true, "Clone after CloseGroup")
	_, _, err = clone.startClone(ctx, req1, cfg1)
	notCloneable(err, true, "the group's refusal")
	c.AbortGroup()
	requireDone(t, c)
	requireDone(t, clone)
	_, err = clone.Clone(ctx)
	notCloneable(err, true, "Clone after the group's end")
	_, _, err = clone.startClone(ctx, req2, cfg2)
	notCloneable(err, false, "the group ended")
}
