package taps

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// groupsOf maps each connection of the trace to its group, as its
// MemberJoined record names it.
func groupsOf(recs []*TraceRecord) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, r := range recs {
		if r.Kind == "group" && r.Event == "MemberJoined" {
			out[r.ConnectionID] = r.GroupID
		}
	}
	return out
}

// TestTraceGapCloneRecordsCarryGroupID: in a grouped scenario (a
// connection, its Clone, their peers; messages sent, received, failed,
// expired; a handler panic; the group closed) every record about a
// connection carries the GroupID of that connection's group, the same in
// all its records, and the clone's is its original's.
func TestTraceGapCloneRecordsCarryGroupID(t *testing.T) {
	var tl traceLog
	panicked := make(chan struct{}, 1)
	sys := newTestSystem(t, WithTracer(tl.add), WithHandlerPanic(func(*PanicError) { panicked <- struct{}{} }))
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	ctx := testCtx(t)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	expired := false
	for i, conn := range []*Connection{c, clone} {
		msg := []byte(fmt.Sprint("from connection ", i))
		require.NoError(t, conn.Send(ctx, msg, nil))
		m, err := conn.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, m.Data)
		// a lifetime of 1 ns has passed when the connection takes it
		// (Expired); on a clock too coarse to see it, it is sent
		err = conn.Send(ctx, []byte("late"), NewMessageContext().Lifetime(time.Nanosecond))
		if err == nil {
			_, err = conn.Receive(ctx)
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, ErrExpired)
			expired = true
		}
	}
	// a handler panic of the clone (reported after its trace record; it
	// ends the clone)
	clone.SendAsync([]byte("panics"), nil, func(*Connection, error) { panic("boom") })
	<-panicked
	<-clone.Done()
	// a send after the final one fails (SendError): both in one batch, so
	// that the connection takes them in one turn (sent one by one, the
	// peer's end in answer to the final message could close the
	// connection first, under load: the second Send was then refused as
	// not allowed in state Closed, with no send_error record)
	last, tooLate := make(chan error, 1), make(chan error, 1)
	c.Batch(func() {
		c.SendAsync([]byte("last"), NewMessageContext().Final(true), func(_ *Connection, err error) { last <- err })
		c.SendAsync([]byte("too late"), nil, func(_ *Connection, err error) { tooLate <- err })
	})
	require.NoError(t, <-last)
	require.ErrorIs(t, <-tooLate, ErrFinalSent)
	c.CloseGroup()
	<-c.Done()
	<-clone.Done()
	ln.Stop()
	<-ln.Done()

	recs := tl.snapshot()
	groups := groupsOf(recs)
	require.NotZero(t, groups[c.ID()], dumpRecs(recs))
	require.Equal(t, groups[c.ID()], groups[clone.ID()], "the clone is in its original's group")
	kinds := map[string]bool{}
	wrong := map[string]bool{} // kind/event of the records without their group
	for _, r := range recs {
		if r.ConnectionID == 0 {
			continue // a listener's or a group's record about no connection
		}
		kinds[r.Kind] = true
		want, ok := groups[r.ConnectionID]
		require.True(t, ok, "connection %d has no MemberJoined: %s", r.ConnectionID, fmtRec(r))
		require.NotZero(t, want)
		if r.GroupID != want {
			wrong[r.Kind+"/"+r.Event] = true
		}
	}
	require.Empty(t, wrong, "records without their connection's group:\n%s", dumpRecs(recs))
	for _, k := range []string{"state", "candidate", "sent", "received", "send_error", "group", "listener", "panic"} {
		require.True(t, kinds[k], "no %q record about a connection: %s", k, dumpRecs(recs))
	}
	if expired {
		require.True(t, kinds["expired"], dumpRecs(recs))
	}
}

// TestTraceGapReestablishmentIsNotReady: a transport lost and replaced
// under WithReestablishment is traced as the state change
// Establishing->Established with Event "Reestablished" (what the
// application gets: its Reestablished event, not a second Ready), and the
// doc of TraceRecord lists that event.
func TestTraceGapReestablishmentIsNotReady(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))),
		WithReestablishment(ReestablishPolicy{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond, MaxAttempts: 20}))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	var mu sync.Mutex
	var events []string
	reest := make(chan struct{}, 1)
	c.OnReady(func(*Connection) { mu.Lock(); events = append(events, "Ready"); mu.Unlock() })
	c.OnReestablished(func(*Connection, int) {
		mu.Lock()
		events = append(events, "Reestablished")
		mu.Unlock()
		reest <- struct{}{}
	})
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	s.Abort() // the client's transport is lost: it re-establishes to ln
	<-s.Done()
	select {
	case <-reest:
	case <-time.After(20 * time.Second):
		t.Fatal("the connection was not re-established")
	}
	s2, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	<-c.Done()
	s2.Abort()
	<-s2.Done()
	ln.Stop()
	<-ln.Done()

	mu.Lock()
	require.Equal(t, []string{"Ready", "Reestablished"}, events)
	mu.Unlock()
	recs := tl.of(c.ID())
	steps := stateSteps(recs)
	require.Equal(t, []string{
		"Establishing->Established Ready",
		"Established->Establishing ",
		"Establishing->Established Reestablished",
	}, steps[:3], dumpRecs(recs))
	for _, st := range steps[1:] {
		require.NotEqual(t, "Establishing->Established Ready", st, "a re-establishment traced as Ready: %v", steps)
	}
	g := groupsOf(tl.snapshot())[c.ID()]
	require.NotZero(t, g)
	for _, r := range recs {
		require.Equal(t, g, r.GroupID, "%s", fmtRec(r))
	}

	// documented: the "state" bullet of TraceRecord's Kind doc names it
	b, err := os.ReadFile("system.go")
	require.NoError(t, err)
	doc := string(b)
	i := strings.Index(doc, `//   - "state":`)
	require.GreaterOrEqual(t, i, 0)
	j := strings.Index(doc[i:], `//   - "candidate"`)
	require.Greater(t, j, 0)
	require.Contains(t, doc[i:i+j], "Reestablished", "TraceRecord's doc lists the state events")
}
