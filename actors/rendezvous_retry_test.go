package actors

import (
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// rvAcceptError is what a TCP listener's Accept returns when the process is
// out of file descriptors (errno is EMFILE, ENFILE, ...).
func rvAcceptError(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// rvAcceptHarness runs a rendezvous's acceptLoop on ln, as startTCP does,
// with a probe actor for self that collects what the loop sends to the
// rendezvous. Tracing is on: the records go to recs.
type rvAcceptHarness struct {
	sys    *System
	r      *rendezvousActor
	cancel context.CancelFunc
	sent   chan any
	mu     sync.Mutex
	recs   []*messages.TraceRecord
}

func newRVAcceptHarness(t *testing.T, ln stacks.Listener) *rvAcceptHarness {
	h := &rvAcceptHarness{sent: make(chan any, 64)}
	h.sys = NewSystem(Config{Tracer: func(rec *messages.TraceRecord) {
		h.mu.Lock()
		h.recs = append(h.recs, rec)
		h.mu.Unlock()
	}})
	probe := h.sys.AS.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *rvListenFailed, *rvEstablished:
			h.sent <- m
		}
	}))
	h.r = &rendezvousActor{sys: h.sys, stack: stacks.TCP(), gate: newAcceptGate()}
	h.r.gctx, h.cancel = context.WithCancel(context.Background())
	s := &rvSocket{local: netip.MustParseAddrPort("127.0.0.1:4243"), remotes: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5000")}, ln: ln}
	root := h.sys.AS.Root
	h.r.wg.Go(func() { h.r.acceptLoop(root, probe, s) })
	return h
}

// stop ends the rendezvous as its teardown does (ctx, then the listener),
// waits for the loop and shuts the system down.
func (h *rvAcceptHarness) stop(t *testing.T, ln stacks.Listener) {
	h.cancel()
	_ = ln.Close()
	h.r.wg.Wait()
	shutdown(t, h.sys)
}

func (h *rvAcceptHarness) retries() []*messages.TraceRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*messages.TraceRecord
	for _, rec := range h.recs {
		if rec.GetKind() == "rendezvous" && rec.GetEvent() == "AcceptRetry" {
			out = append(out, rec)
		}
	}
	return out
}

// requireNothingSent fails if the accept loop told the rendezvous anything
// (before the fix: rvListenFailed at the first EMFILE).
func (h *rvAcceptHarness) requireNothingSent(t *testing.T) {
	t.Helper()
	select {
	case m := <-h.sent:
		if lf, ok := m.(*rvListenFailed); ok {
			t.Fatalf("the accept loop sent rvListenFailed (%v): the rendezvous fails", lf.err)
		}
		t.Fatalf("the accept loop sent %T", m)
	default:
	}
}

func gapsOf(calls []time.Time) []time.Duration {
	var gaps []time.Duration
	for i := 1; i < len(calls); i++ {
		gaps = append(gaps, calls[i].Sub(calls[i-1]))
	}
	return gaps
}

// BUG (rendezvous EMFILE): the TCP rendezvous's acceptLoop ended at an
// accept that failed for want of a file descriptor (EMFILE; likewise
// ENFILE, ENOBUFS, ENOMEM) and failed the rendezvous (rvListenFailed),
// although the listening socket was fine. It waits (5 ms doubling up to
// 1 s, from 5 ms again after an accept) and accepts again, tracing
// AcceptRetry. Fake time: the waits are exact.
func TestRendezvousAcceptRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emfile, enfile := rvAcceptError(syscall.EMFILE), rvAcceptError(syscall.ENFILE)
		enobufs, enomem := rvAcceptError(syscall.ENOBUFS), rvAcceptError(syscall.ENOMEM)
		ln := newScriptListener(emfile, enfile, enobufs, enomem, nil, emfile, emfile, nil)
		h := newRVAcceptHarness(t, ln)
		defer h.stop(t, ln)
		time.Sleep(time.Minute) // fake time: past every wait
		synctest.Wait()
		h.requireNothingSent(t)
		calls := ln.callTimes()
		require.Len(t, calls, 9, "8 scripted accepts, then the one that waits")
		ms := time.Millisecond
		require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 0, 5 * ms, 10 * ms, 0}, gapsOf(calls),
			"the waits between accepts: doubling from 5 ms, again from 5 ms after an accept")
		for i, p := range ln.made {
			require.True(t, p.closed.Load(), "transport %d from no peer of the rendezvous: not reset", i)
		}
		retries := h.retries()
		require.Len(t, retries, 6)
		for _, rec := range retries {
			require.Equal(t, "tcp", rec.GetStack())
			require.Equal(t, ln.Addr().String(), rec.GetLocal())
			require.NotEmpty(t, rec.GetError())
		}
		require.Contains(t, retries[0].GetError(), "too many open files")
	})
}

// TestRendezvousAcceptBackoffCapped: the wait doubles up to 1 s and stays
// there while the accepts keep failing; the rendezvous does not fail.
func TestRendezvousAcceptBackoffCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := make([]error, 12)
		for i := range script {
			script[i] = rvAcceptError(syscall.EMFILE)
		}
		ln := newScriptListener(script...)
		h := newRVAcceptHarness(t, ln)
		defer h.stop(t, ln)
		time.Sleep(time.Hour) // fake time: past every wait
		synctest.Wait()
		h.requireNothingSent(t)
		calls := ln.callTimes()
		require.Len(t, calls, 13)
		ms := time.Millisecond
		require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms,
			time.Second, time.Second, time.Second, time.Second}, gapsOf(calls))
	})
}

// TestRendezvousAcceptOtherErrorFails: an accept error that is no want of
// a resource still fails the rendezvous at once (rvListenFailed), without
// a wait.
func TestRendezvousAcceptOtherErrorFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newScriptListener(rvAcceptError(syscall.EMFILE), rvAcceptError(syscall.EINVAL))
		h := newRVAcceptHarness(t, ln)
		defer h.stop(t, ln)
		t0 := time.Now()
		m := <-h.sent
		require.Equal(t, 5*time.Millisecond, time.Since(t0), "EMFILE waited, EINVAL did not")
		lf, ok := m.(*rvListenFailed)
		require.True(t, ok, "got %T", m)
		require.ErrorIs(t, lf.err, syscall.EINVAL)
		synctest.Wait()
		require.Len(t, ln.callTimes(), 2, "an accept after the failure")
		require.False(t, rvAcceptLoopAlive(), "the accept loop outlived the failure")
	})
}

// TestRendezvousAcceptStopDuringBackoff: the end of the rendezvous (its
// context, cancelled by teardown) while the accept loop waits to accept
// again ends the wait at once: the loop is gone without any time passing,
// no timer is left behind, and nothing is sent.
func TestRendezvousAcceptStopDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := make([]error, 100)
		for i := range script {
			script[i] = rvAcceptError(syscall.EMFILE)
		}
		ln := newScriptListener(script...)
		h := newRVAcceptHarness(t, ln)
		defer shutdown(t, h.sys)
		time.Sleep(3 * time.Second) // fake time: into the 1 s waits
		synctest.Wait()
		h.requireNothingSent(t)
		n := len(ln.callTimes())
		require.Greater(t, n, 9, "in the 1 s waits")
		require.True(t, rvAcceptLoopAlive())
		t0 := time.Now()
		h.cancel() // teardown cancels first, then closes the listener
		h.r.wg.Wait()
		require.Zero(t, time.Since(t0), "the end of the rendezvous waited for the backoff")
		synctest.Wait()
		require.False(t, rvAcceptLoopAlive(), "the accept loop outlived the rendezvous")
		require.Len(t, ln.callTimes(), n, "an accept after the end")
		h.requireNothingSent(t)
		_ = ln.Close()
	})
}

// rvAcceptLoopAlive reports whether a rendezvous's accept loop runs (or
// waits).
func rvAcceptLoopAlive() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), "(*rendezvousActor).acceptLoop")
		}
		buf = make([]byte, 2*len(buf))
	}
}
