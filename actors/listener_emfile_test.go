package actors

import (
	"context"
	"errors"
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

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// errEMFILE is what a TCP listener's Accept returns when the process is
// out of file descriptors.
var errEMFILE = &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}

// scriptListener answers Accept from its script, in order: an error, or
// a pipe transport for a nil entry; past the script, Accept blocks until
// Close. It records the time of every Accept call.
type scriptListener struct {
	mu     sync.Mutex
	script []error
	calls  []time.Time
	made   []*pipeTransport
	closed chan struct{}
	once   sync.Once
}

func newScriptListener(script ...error) *scriptListener {
	return &scriptListener{script: script, closed: make(chan struct{})}
}

func (l *scriptListener) Accept() (stacks.Transport, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	if len(l.script) == 0 {
		l.mu.Unlock()
		<-l.closed
		return nil, net.ErrClosed
	}
	err := l.script[0]
	l.script = l.script[1:]
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	a, b := net.Pipe()
	p := &pipeTransport{Conn: a, peer: b, remote: netip.MustParseAddrPort("192.0.2.9:9")}
	l.made = append(l.made, p)
	l.mu.Unlock()
	return p, nil
}

func (l *scriptListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *scriptListener) Addr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:4242"))
}

// callTimes returns the times of the Accept calls so far.
func (l *scriptListener) callTimes() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.calls...)
}

type scriptListenStack struct{ ln *scriptListener }

func (s *scriptListenStack) Name() string { return "scriptln" }
func (s *scriptListenStack) Capabilities() stacks.Capabilities {
	return stacks.Capabilities{Reliability: true}
}
func (s *scriptListenStack) Dial(context.Context, netip.AddrPort, stacks.Options) (stacks.Transport, error) {
	return nil, errors.New("script listen stack cannot dial")
}
func (s *scriptListenStack) Listen(context.Context, stacks.Options) (stacks.Listener, error) {
	return s.ln, nil
}

// traceLog keeps the trace records of a System.
type traceLog struct {
	mu   sync.Mutex
	recs []*messages.TraceRecord
}

func (t *traceLog) add(r *messages.TraceRecord) {
	t.mu.Lock()
	t.recs = append(t.recs, r)
	t.mu.Unlock()
}

// events returns the records of kind and event.
func (t *traceLog) events(kind, event string) []*messages.TraceRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*messages.TraceRecord
	for _, r := range t.recs {
		if r.GetKind() == kind && r.GetEvent() == event {
			out = append(out, r)
		}
	}
	return out
}

func startScriptListener(t *testing.T, sys *System, ln *scriptListener) *ListenerStarted {
	t.Helper()
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{&scriptListenStack{ln: ln}}}
	res, err := Ask(context.Background(), sys, sys.Root, &messages.StartListening{Config: cfg})
	require.NoError(t, err)
	return res.(*ListenerStarted)
}

// BUG (EMFILE): an accept that failed for want of a file descriptor
// (EMFILE; likewise ENFILE, ENOBUFS, ENOMEM) stopped the listener for good:
// every later connection was refused. It is temporary: the listener waits
// (5 ms, doubling up to 1 s, from 5 ms again after an accept) and accepts
// again, tracing AcceptRetry. Fake time: the waits are exact.
func TestListenerEMFILERetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log traceLog
		sys := NewSystem(Config{Tracer: log.add})
		defer shutdown(t, sys)
		ln := newScriptListener(errEMFILE, errEMFILE, errEMFILE, errEMFILE, nil, errEMFILE, errEMFILE, nil)
		st := startScriptListener(t, sys, ln)
		for i := range 2 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			c, err := st.Queue.Accept(ctx)
			cancel()
			require.NoError(t, err, "connection %d: the listener stopped at EMFILE", i)
			require.NotNil(t, c)
		}
		synctest.Wait()
		select {
		case <-st.Queue.Done():
			t.Fatal("the listener stopped")
		default:
		}
		calls := ln.callTimes()
		require.Len(t, calls, 9, "8 scripted accepts, then the one that waits")
		var gaps []time.Duration
		for i := 1; i < len(calls); i++ {
			gaps = append(gaps, calls[i].Sub(calls[i-1]))
		}
		ms := time.Millisecond
		require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 0, 5 * ms, 10 * ms, 0}, gaps,
			"the waits between accepts: doubling from 5 ms, again from 5 ms after an accept")
		retries := log.events("listener", "AcceptRetry")
		require.Len(t, retries, 6)
		for _, r := range retries {
			require.Contains(t, r.GetError(), "too many open files")
			require.Equal(t, "scriptln", r.GetStack())
			require.Equal(t, "127.0.0.1:4242", r.GetLocal())
		}
	})
}

// TestListenerEMFILEBackoffCapped: the wait doubles up to 1 s and stays
// there while the accepts keep failing.
func TestListenerEMFILEBackoffCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		script := make([]error, 12)
		for i := range script {
			script[i] = errEMFILE
		}
		ln := newScriptListener(script...)
		st := startScriptListener(t, sys, ln)
		time.Sleep(time.Hour) // fake time: past every wait
		synctest.Wait()
		calls := ln.callTimes()
		require.Len(t, calls, 13)
		ms := time.Millisecond
		want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second, time.Second, time.Second}
		for i, w := range want {
			require.Equal(t, w, calls[i+1].Sub(calls[i]), "wait %d", i)
		}
		select {
		case <-st.Queue.Done():
			t.Fatal("the listener stopped")
		default:
		}
	})
}

// TestListenerEMFILEStopDuringBackoff: a Stop while the listener waits to
// accept again ends the wait at once: the accept goroutine is gone without
// any time passing, and no timer is left behind.
func TestListenerEMFILEStopDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		script := make([]error, 100)
		for i := range script {
			script[i] = errEMFILE
		}
		ln := newScriptListener(script...)
		st := startScriptListener(t, sys, ln)
		time.Sleep(3 * time.Second) // fake time: into the 1 s waits
		synctest.Wait()
		select {
		case <-st.Queue.Done():
			t.Fatal("the listener stopped at EMFILE")
		default:
		}
		n := len(ln.callTimes())
		require.Greater(t, n, 9, "in the 1 s waits")
		t0 := time.Now()
		_, err := Ask(context.Background(), sys, st.PID, &messages.StopListener{})
		require.NoError(t, err)
		<-st.Queue.Done()
		synctest.Wait()
		require.Zero(t, time.Since(t0), "the stop waited for the backoff")
		require.False(t, acceptGoroutineAlive(), "the accept goroutine outlived the stop")
		require.Len(t, ln.callTimes(), n, "an accept after the stop")
	})
}

// acceptGoroutineAlive reports whether a listener's accept goroutine
// runs (or waits).
func acceptGoroutineAlive() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), "(*listenerActor).startAccept.func")
		}
		buf = make([]byte, 2*len(buf))
	}
}
