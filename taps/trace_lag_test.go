package taps

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests that a trace never lags what the application saw: the record of
// an event is traced before its handler can run.

// lagCheck records, from handlers, whether the trace already held the
// record of their event.
type lagCheck struct {
	mu  sync.Mutex
	bad []string
}

func (lc *lagCheck) require(tl *traceLog, c *Connection, kind, event string, atLeast int) {
	if n := tl.count(c.ID(), kind, event); n < atLeast {
		lc.mu.Lock()
		lc.bad = append(lc.bad, fmt.Sprintf("%s/%s: %d records when handler %d ran", kind, event, n, atLeast))
		lc.mu.Unlock()
	}
}

func (lc *lagCheck) check(t *testing.T, tl *traceLog, c *Connection) {
	t.Helper()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	require.Empty(t, lc.bad, dumpRecs(tl.of(c.ID())))
}

// TestTraceMinRateSoftErrorBeforeItsHandler: the SoftError of a
// minRecvRate not met is traced ("soft_error" SoftError), before its
// handler runs.
func TestTraceMinRateSoftErrorBeforeItsHandler(t *testing.T) {
	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(MinRecvRate, int64(1_000_000_000)))
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	var lc lagCheck
	softs := make(chan struct{}, 1)
	c.OnSoftError(func(c *Connection, err error) {
		lc.require(tl, c, "soft_error", "SoftError", 1)
		select {
		case softs <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	go func() { _, _ = c.Receive(ctx) }() // waiting to receive: nothing comes
	select {
	case <-softs:
	case <-time.After(3 * time.Second):
		t.Fatal("no SoftError for minRecvRate")
	}
	lc.check(t, tl, c)
}

// TestTraceReestablishmentBeforeItsHandlers: the Reestablishing and
// Reestablished events of a connection re-established twice are traced
// (group MemberReestablishing, MemberReestablished) before their handlers
// run.
func TestTraceReestablishmentBeforeItsHandlers(t *testing.T) {
	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))),
		WithReestablishment(ReestablishPolicy{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond, MaxAttempts: 20}))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	var lc lagCheck
	var losses, reests int // on the connection's event goroutine only
	reest := make(chan struct{}, 1)
	c.OnReestablishing(func(c *Connection, _ error, _ int) {
		losses++
		lc.require(tl, c, "group", "MemberReestablishing", losses)
	})
	c.OnReestablished(func(c *Connection, _ int) {
		reests++
		lc.require(tl, c, "state", "Reestablished", reests)
		lc.require(tl, c, "group", "MemberReestablished", reests)
		reest <- struct{}{}
	})
	for range 2 {
		s, err := ln.Accept(testCtx(t))
		require.NoError(t, err)
		s.Abort() // the client's transport is lost: it re-establishes to ln
		<-s.Done()
		select {
		case <-reest:
		case <-time.After(20 * time.Second):
			t.Fatal("the connection was not re-established")
		}
	}
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	c.Abort()
	<-c.Done()
	s.Abort()
	<-s.Done()
	lc.check(t, tl, c)
}
