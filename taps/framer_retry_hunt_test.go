package taps

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// sayAfter serves a connection by writing line after delay, then reading
// until the peer closes.
func sayAfter(line string, delay time.Duration) func(net.Conn) {
	return func(c net.Conn) {
		if delay > 0 {
			time.Sleep(delay) // the server's pace is the scenario
		}
		_, _ = c.Write([]byte(line))
		_, _ = io.Copy(io.Discard, c)
	}
}

// A framer's FailConnection before Ready drops that candidate and the
// race goes on (README). When the next candidate fails too, the
// EstablishmentError lists every attempt: the one the framer failed as
// well as the refused one, and unwraps to the framer's error.
func TestFramerFailureThenRefusedListsEveryAttempt(t *testing.T) {
	sys := newTestSystem(t)
	nope := newCountingListener(t, sayAfter("nope!\n", 0))
	refused := refusedAddr(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithRemoteEndpoint(remote(nope.addr()), remote(refused)))
	pre.AddFramer(strictHelloFramer{})
	_, err := pre.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	t.Logf("error: %v", err)
	var endpoints []string
	for _, a := range ee.Attempts {
		endpoints = append(endpoints, a.Endpoint)
	}
	require.Contains(t, endpoints, refused.String())
	require.Contains(t, endpoints, nope.addr().String(), "the attempt the framer failed is not listed")
	require.True(t, errors.Is(err, errNoHello()), "the framer's error is lost: %v", err)
}

func errNoHello() error { return errNoHelloSentinel }

var errNoHelloSentinel = errors.New("no hello")

// strictHelloFramer is helloLineFramer failing with errNoHelloSentinel.
type strictHelloFramer struct{ helloLineFramer }

func (strictHelloFramer) HandleReceivedData(inst *framers.Instance) {
	if !inst.IsReady() {
		b, ok := inst.Parse(len("hello\n"), len("hello\n"))
		if !ok {
			return
		}
		if string(b) != "hello\n" {
			inst.FailConnection(errNoHelloSentinel)
			return
		}
		inst.AdvanceReceiveCursor(len(b))
		inst.MakeConnectionReady()
	}
	if b, ok := inst.Parse(1, -1); ok {
		inst.DeliverAndAdvanceReceiveCursor(nil, len(b), true)
	}
}

// The same when the next candidate wins: the report tells what happened,
// both attempts.
func TestFramerFailureThenWinReportsBoth(t *testing.T) {
	sys := newTestSystem(t)
	nope := newCountingListener(t, sayAfter("nope!\n", 0))
	hello := newCountingListener(t, sayAfter("hello\n", 0))
	var ready atomic.Int32
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithRemoteEndpoint(remote(nope.addr()), remote(hello.addr())))
	pre.AddFramer(strictHelloFramer{})
	closed := make(chan struct{})
	pre.OnReady(func(*Connection) { ready.Add(1) })
	pre.OnClosed(func(*Connection) { close(closed) })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	r := c.EstablishmentReport()
	var endpoints []string
	for _, a := range r.Attempts {
		endpoints = append(endpoints, a.Endpoint)
	}
	t.Logf("report: %+v", r.Attempts)
	require.Contains(t, endpoints, hello.addr().String())
	require.Contains(t, endpoints, nope.addr().String(), "the attempt the framer failed is not in the report")
	// handlers run in event order: once Closed has run, every Ready has
	// (Initiate may return before the Ready handler runs)
	c.Close()
	<-closed
	<-c.Done()
	require.EqualValues(t, 1, ready.Load())
}

// WithEstablishmentTimeout bounds the whole establishment. A framer that
// fails its first candidate late makes the connection race again; that
// race must not get a fresh timeout of its own.
func TestEstablishmentTimeoutAcrossFramerRetry(t *testing.T) {
	sys := newTestSystem(t)
	const timeout = 600 * time.Millisecond
	// the first race's winner fails at 550 ms: a second race with a fresh
	// timeout of its own would end at 1150 ms
	late := newCountingListener(t, sayAfter("nope!\n", 550*time.Millisecond))
	silent := deadListener(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithEstablishmentTimeout(timeout),
		WithAttemptDelay(2*time.Second), // the second candidate is not started by the first race
		WithRemoteEndpoint(remote(late.addr()), remote(silent)))
	pre.AddFramer(strictHelloFramer{})
	start := time.Now()
	_, err := pre.Initiate(testCtx(t))
	took := time.Since(start)
	t.Logf("took %v: %v", took, err)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, ErrEstablishmentTimeout)
	require.Less(t, took, timeout+350*time.Millisecond, "the establishment timeout was exceeded")
}
