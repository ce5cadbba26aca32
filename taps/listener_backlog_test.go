package taps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// BUG (unbounded accept): a Listener accepted every connection the kernel
// completed at once, however slowly the application took them: with
// nobody calling Accept, or a ConnectionReceived handler that blocks, a
// burst of clients made it hold a file descriptor, actors and buffers per
// connection without bound. It holds at most WithAcceptBacklog (default
// 128) now; the rest wait in the kernel's listen backlog.

// receivedCounter counts the Listener's ConnectionReceived trace records;
// waitFor waits until it has seen n.
type receivedCounter struct {
	mu      sync.Mutex
	n       int
	waiters map[int]chan struct{}
}

func (c *receivedCounter) trace(r *TraceRecord) {
	if r.Kind != "listener" || r.Event != "ConnectionReceived" {
		return
	}
	c.mu.Lock()
	c.n++
	if ch, ok := c.waiters[c.n]; ok {
		close(ch)
		delete(c.waiters, c.n)
	}
	c.mu.Unlock()
}

func (c *receivedCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *receivedCounter) waitFor(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	if !c.reached(ctx, n) {
		t.Fatalf("%d ConnectionReceived, want %d: %v", c.count(), n, ctx.Err())
	}
}

// reached waits until c has seen n, or ctx ends: it reports whether c has.
func (c *receivedCounter) reached(ctx context.Context, n int) bool {
	c.mu.Lock()
	if c.n >= n {
		c.mu.Unlock()
		return true
	}
	if c.waiters == nil {
		c.waiters = map[int]chan struct{}{}
	}
	ch, ok := c.waiters[n]
	if !ok {
		ch = make(chan struct{})
		c.waiters[n] = ch
	}
	c.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// backlogListen starts a TCP Listener on loopback whose
// ConnectionReceived records rc counts.
func backlogListen(t *testing.T, rc *receivedCounter, opts ...PreconnectionOption) *Listener {
	t.Helper()
	sys := newTestSystem(t, WithTracer(rc.trace))
	opts = append([]PreconnectionOption{WithSystem(sys), WithProtocols("tcp"),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))}, opts...)
	ln, err := NewPreconnection(opts...).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln
}

// dialRaw dials ln n times at once with net.Dial, each client sending its
// index ("%04d"); it returns once every dial has succeeded (the kernel
// completed each handshake, into its backlog when nobody accepts).
func dialRaw(t *testing.T, ln *Listener, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err == nil {
				_, err = fmt.Fprintf(c, "%04d", i)
			}
			conns[i], errs[i] = c, err
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	require.NoError(t, errors.Join(errs...))
	return conns
}

// clientIndex receives the index a dialRaw client sent on c.
func clientIndex(t *testing.T, ctx context.Context, c *Connection) int {
	t.Helper()
	var b []byte
	for len(b) < 4 {
		m, err := c.Receive(ctx, MinIncompleteLength(4-len(b)))
		require.NoError(t, err)
		b = append(b, m.Data...)
	}
	i, err := strconv.Atoi(string(b))
	require.NoError(t, err, "%q", b)
	return i
}

// checkHeld checks that ln holds at most bound connections for the
// application.
func checkHeld(t *testing.T, ln *Listener, bound int) {
	t.Helper()
	n, _ := ln.q.Held()
	require.LessOrEqual(t, n, bound, "the Listener holds more connections than its backlog")
}

// With nobody calling Accept, a burst of 400 clients is accepted only up
// to the default backlog (128); the others wait in the kernel's backlog
// and are accepted one for each Accept.
func TestListenerBacklogPull(t *testing.T) {
	const n, bound = 400, 128
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc := &receivedCounter{}
	ln := backlogListen(t, rc)
	dialRaw(t, ln, n)
	rc.waitFor(t, ctx, bound)
	// the gate is closed: the accept goroutine waits, so nothing more is
	// accepted however long the 272 other clients wait
	held, accepting := ln.q.Held()
	require.Equal(t, bound, held)
	require.False(t, accepting, "the Listener must stop accepting at its backlog")
	require.Equal(t, bound, rc.count())

	acceptEachOnce(t, ctx, ln, n, bound)
	require.Equal(t, n, rc.count())
	held, accepting = ln.q.Held()
	require.Zero(t, held)
	require.True(t, accepting)
}

// With a ConnectionReceived handler that blocks, the deliveries pending
// for it stay within the backlog (WithAcceptBacklog); once it is released
// every connection arrives.
func TestListenerBacklogHandler(t *testing.T) {
	const n, bound = 400, 16
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc := &receivedCounter{}
	ln := backlogListen(t, rc, WithAcceptBacklog(bound))
	release := make(chan struct{})
	got := make(chan *Connection, n)
	var overHeld error
	var once sync.Once
	ln.OnConnectionReceived(func(l *Listener, c *Connection) {
		<-release
		if h, _ := l.q.Held(); h > bound {
			once.Do(func() { overHeld = fmt.Errorf("%d held, backlog %d", h, bound) })
		}
		got <- c
	})
	dialRaw(t, ln, n)
	// the call running (blocked) and the backlog pending
	rc.waitFor(t, ctx, bound+1)
	held, accepting := ln.q.Held()
	require.Equal(t, bound, held)
	require.False(t, accepting, "the Listener must stop accepting at its backlog")
	require.Equal(t, bound+1, rc.count())

	close(release)
	seen := make(map[int]bool, n)
	for range n {
		var c *Connection
		select {
		case c = <-got:
		case <-ctx.Done():
			t.Fatalf("%d connections of %d: %v", len(seen), n, ctx.Err())
		}
		i := clientIndex(t, ctx, c)
		require.False(t, seen[i], "client %d twice", i)
		seen[i] = true
		c.Abort()
	}
	require.NoError(t, overHeld)
	require.Len(t, seen, n)
	require.Equal(t, n, rc.count())
}

// SetNewConnectionLimit and the backlog both close the gate: accepting
// resumes only when both allow it.
func TestListenerBacklogWithConnectionLimit(t *testing.T) {
	const n, bound = 40, 8
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc := &receivedCounter{}
	ln := backlogListen(t, rc, WithAcceptBacklog(bound))
	require.NoError(t, ln.SetNewConnectionLimit(3))
	dialRaw(t, ln, n)
	rc.waitFor(t, ctx, 3)
	seen := map[int]bool{}
	take := func() {
		t.Helper()
		takeOnce(t, ctx, ln, bound, seen)
	}
	for range 3 {
		take()
		// below the backlog now, but the limit is 0: still closed
		_, accepting := ln.q.Held()
		require.False(t, accepting, "the limit is reached: the Listener must not accept")
	}
	require.Equal(t, 3, rc.count(), "delivered beyond the limit")

	require.NoError(t, ln.SetNewConnectionLimit(5))
	for range 5 {
		take()
	}
	_, accepting := ln.q.Held()
	require.False(t, accepting, "the raised limit is reached again")
	require.Equal(t, 8, rc.count(), "delivered beyond the limit")

	require.NoError(t, ln.SetNewConnectionLimit(NoConnectionLimit))
	for range n - 8 {
		take()
	}
	require.Len(t, seen, n)
	held, accepting := ln.q.Held()
	require.Zero(t, held)
	require.True(t, accepting)
}

// A connection that fails while it is set up (before Ready) gives its
// place in the backlog back: the connections after it are accepted.
func TestListenerBacklogSetupFailure(t *testing.T) {
	const bound, failing = 2, 12
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Ready once the peer sends "R"; any other byte fails the connection
	hs := newHookFramer()
	hs.start = func(*framers.Instance) {}
	hs.recv = func(inst *framers.Instance) {
		if inst.IsReady() {
			return // the test sends nothing after "R"
		}
		b, ok := inst.Parse(1, 1)
		if !ok {
			return
		}
		if b[0] != 'R' {
			inst.FailConnection(errors.New("handshake refused"))
			return
		}
		inst.AdvanceReceiveCursor(1)
		inst.MakeConnectionReady()
	}
	rc := &receivedCounter{}
	sys := newTestSystem(t, WithTracer(rc.trace))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithAcceptBacklog(bound),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(hs)
	ln, err := pre.Listen(ctx)
	require.NoError(t, err)
	defer ln.Stop()

	// each failing client waits for the Listener's end of its connection
	// (it fails, then the next one is accepted only if its slot was
	// given back)
	for range failing {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, err = c.Write([]byte("F"))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = io.ReadAll(c)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the Listener did not fail the connection: %v", err)
		_ = c.Close()
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("R"))
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err, "a connection failed before Ready kept its place in the backlog")
	s.Abort()
	require.Equal(t, 1, rc.count())
}

// WithAcceptBacklog below 1 fails Listen before anything is bound.
func TestListenerBacklogInvalid(t *testing.T) {
	sys := newTestSystem(t)
	for _, b := range []int{0, -1} {
		pre := NewPreconnection(WithSystem(sys), WithAcceptBacklog(b),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
		ln, err := pre.Listen(testCtx(t))
		require.Nil(t, ln)
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ReasonInvalidConfiguration, ee.Reason)
		require.ErrorContains(t, err, fmt.Sprintf("WithAcceptBacklog(%d)", b))
	}
	// Initiate has no use for it
	ln := backlogListen(t, &receivedCounter{})
	c, err := NewPreconnection(WithSystem(ln.sys), WithProtocols("tcp"), WithAcceptBacklog(0),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
	require.NoError(t, err)
	c.Abort()
}

// dialTo dials addr n times at once with net.Dial, client i sending its
// index first+i ("%04d"), and returns once every dial has succeeded.
func dialTo(t *testing.T, addr string, first, n int) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs[i] = err
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			_, errs[i] = fmt.Fprintf(c, "%04d", first+i)
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
}

// BUG (backlog overshoot): with several listening sockets each accept
// goroutine checked the gate, then blocked in accept and took the next
// connection even when another socket's goroutine had filled the backlog
// meanwhile: the Listener held one connection beyond WithAcceptBacklog per
// other socket. Here the goroutine of the second socket (127.0.0.2) waits
// in accept from the start, since nobody dials it, while the first socket
// fills the backlog; the clients of the second socket must then wait
// (the bound holds exactly: Held is never above it), and every client of
// both sockets is accepted as the application takes connections.
func TestListenerBacklogSeveralSockets(t *testing.T) {
	const bound, first, more = 4, 4, 40
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc := &receivedCounter{}
	var lnp atomic.Pointer[Listener]
	var overHeld atomic.Int64 // the most held seen above bound at a ConnectionReceived
	trace := func(r *TraceRecord) {
		rc.trace(r)
		if ln := lnp.Load(); ln != nil && r.Kind == "listener" && r.Event == "ConnectionReceived" {
			if h, _ := ln.q.Held(); h > bound && int64(h) > overHeld.Load() {
				overHeld.Store(int64(h))
			}
		}
	}
	sys := newTestSystem(t, WithTracer(trace))
	ln, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithAcceptBacklog(bound),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0),
			NewLocalEndpoint().WithIPAddress("127.0.0.2").WithPort(0))).Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	lnp.Store(ln)
	var addrs [2]string
	les := ln.LocalEndpoints()
	require.Len(t, les, 2)
	for _, le := range les {
		ap, ok := le.Addr()
		require.True(t, ok)
		switch ap.Addr().String() {
		case "127.0.0.1":
			addrs[0] = ap.String()
		case "127.0.0.2":
			addrs[1] = ap.String()
		}
	}
	require.NotEmpty(t, addrs[0])
	require.NotEmpty(t, addrs[1])

	// the first socket fills the backlog
	dialTo(t, addrs[0], 0, first)
	rc.waitFor(t, ctx, bound)
	held, accepting := ln.q.Held()
	require.Equal(t, bound, held)
	require.False(t, accepting)

	// then clients of both sockets, none taken: nothing more may be
	// accepted. The (bound+1)th ConnectionReceived must never come; it
	// came at once before the fix, so a short wait for it shows it.
	dialTo(t, addrs[1], first, more)
	dialTo(t, addrs[0], first+more, more)
	wait, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	over := rc.reached(wait, bound+1)
	stop()
	require.False(t, over, "accepted beyond the backlog")
	require.Zero(t, overHeld.Load(), "the Listener held more connections than its backlog")
	held, accepting = ln.q.Held()
	require.Equal(t, bound, held, "the Listener holds more connections than its backlog")
	require.False(t, accepting)
	require.Equal(t, bound, rc.count(), "accepted beyond the backlog")

	// every client of both sockets comes as the application takes them
	total := first + 2*more
	acceptEachOnce(t, ctx, ln, total, bound)
	require.Zero(t, overHeld.Load(), "the Listener held more connections than its backlog")
	held, accepting = ln.q.Held()
	require.Zero(t, held)
	require.True(t, accepting)
}

// acceptEachOnce takes n connections with Accept, checking after each that
// the Listener holds no more than bound, and requires each client (its
// index, clientIndex) to come exactly once.
func acceptEachOnce(t *testing.T, ctx context.Context, ln *Listener, n, bound int) {
	t.Helper()
	seen := make(map[int]bool, n)
	for range n {
		takeOnce(t, ctx, ln, bound, seen)
	}
	require.Len(t, seen, n)
}

// takeOnce takes one connection with Accept, checks the Listener then
// holds no more than bound, requires its client (clientIndex) not in seen,
// adds it, and aborts the connection.
func takeOnce(t *testing.T, ctx context.Context, ln *Listener, bound int, seen map[int]bool) {
	t.Helper()
	c, err := ln.Accept(ctx)
	require.NoError(t, err)
	checkHeld(t, ln, bound)
	i := clientIndex(t, ctx, c)
	require.False(t, seen[i], "client %d twice", i)
	seen[i] = true
	c.Abort()
}
