package actors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// fakeListenStack listens with a fakeListener.
type fakeListenStack struct{ ln *fakeListener }

func (s *fakeListenStack) Name() string { return "fakeln" }
func (s *fakeListenStack) Capabilities() stacks.Capabilities {
	return stacks.Capabilities{Reliability: true}
}
func (s *fakeListenStack) Dial(context.Context, netip.AddrPort, stacks.Options) (stacks.Transport, error) {
	return nil, errors.New("fake listen stack cannot dial")
}
func (s *fakeListenStack) Listen(context.Context, stacks.Options) (stacks.Listener, error) {
	return s.ln, nil
}

// fakeListener accepts up to n pipe transports at once, then fails with
// err (nil: blocks until closed). It records every transport it made.
type fakeListener struct {
	n      int
	err    error
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	made   []*pipeTransport
	wrap   func(*pipeTransport) stacks.Transport // nil: the pipe as it is
}

func newFakeListener(n int, err error) *fakeListener {
	return &fakeListener{n: n, err: err, closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (stacks.Transport, error) {
	l.mu.Lock()
	if len(l.made) < l.n {
		a, b := net.Pipe()
		p := &pipeTransport{Conn: a, peer: b, remote: netip.MustParseAddrPort("192.0.2.9:9")}
		l.made = append(l.made, p)
		wrap := l.wrap
		l.mu.Unlock()
		if wrap != nil {
			return wrap(p), nil
		}
		return p, nil
	}
	l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:4242"))
}

func (l *fakeListener) transports() []*pipeTransport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*pipeTransport(nil), l.made...)
}

func startListener(t *testing.T, sys *System, ln *fakeListener) *ListenerStarted {
	t.Helper()
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{&fakeListenStack{ln: ln}}}
	res, err := Ask(context.Background(), sys, sys.Root, &messages.StartListening{Config: cfg})
	require.NoError(t, err)
	return res.(*ListenerStarted)
}

// TestListenerAcceptErrorStops: an accept error stops the listener. The
// listener runs on its accept goroutine, which posts the error and then
// runs the stop: it must not wait for itself.
func TestListenerAcceptErrorStops(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	boom := errors.New("accept failed")
	st := startListener(t, sys, newFakeListener(0, boom))
	select {
	case <-st.Queue.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not stop after an accept error")
	}
	_, err := st.Queue.Accept(context.Background())
	require.ErrorIs(t, err, boom)
}

// TestListenerStopClosesEveryTransport: whatever the listener had accepted
// when it stops (claimed and made a connection, delivered or not, or still
// on its way from the accept goroutine), every transport is closed once
// the system is shut down.
func TestListenerStopClosesEveryTransport(t *testing.T) {
	for range 50 {
		sys := NewSystem(Config{})
		ln := newFakeListener(50, nil)
		st := startListener(t, sys, ln)
		first, err := st.Queue.Accept(context.Background())
		require.NoError(t, err)
		require.NotNil(t, first)
		// a system message: it overtakes the accepted transports queued
		// while the listener runs on this goroutine
		sys.AS.Root.Stop(st.PID)
		<-st.Queue.Done()
		shutdown(t, sys)
		made := ln.transports()
		require.NotEmpty(t, made)
		for i, p := range made {
			require.True(t, p.closed.Load(), "transport %d of %d left open", i, len(made))
		}
	}
}

// retryListenStack listens with fresh fakeListeners; its first fails
// Listen calls fail (as when the shared ephemeral port is taken for its
// transport).
type retryListenStack struct {
	name  string
	mu    sync.Mutex
	fails int
}

func (s *retryListenStack) Name() string { return s.name }
func (s *retryListenStack) Capabilities() stacks.Capabilities {
	return stacks.Capabilities{Reliability: true}
}
func (s *retryListenStack) Dial(context.Context, netip.AddrPort, stacks.Options) (stacks.Transport, error) {
	return nil, errors.New("retry listen stack cannot dial")
}
func (s *retryListenStack) Listen(context.Context, stacks.Options) (stacks.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails > 0 {
		s.fails--
		return nil, errors.New("address already in use")
	}
	return newFakeListener(0, nil), nil
}

// TestListenerRetryKeepsIfacesAligned: when binding starts over with a
// fresh ephemeral port, the interfaces reported start over too: one per
// listening socket.
func TestListenerRetryKeepsIfacesAligned(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{
		&retryListenStack{name: "tcp"}, &retryListenStack{name: "udp", fails: 1}}}
	res, err := Ask(context.Background(), sys, sys.Root, &messages.StartListening{Config: cfg})
	require.NoError(t, err)
	st := res.(*ListenerStarted)
	require.Len(t, st.Addrs, 2)
	require.Len(t, st.Stacks, 2)
	require.Len(t, st.Ifaces, len(st.Addrs), "one interface per listening socket: %q", st.Ifaces)
	sys.AS.Root.Stop(st.PID)
	<-st.Queue.Done()
}

// TestListenerStartClaim: a listener claims its start before it binds. A
// caller that abandoned the start first gets its error back and the port
// stays free; a caller that abandons it after is told the listener, to
// stop it.
func TestListenerStartClaim(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ctx := context.Background()
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	port := free.Addr().(*net.TCPAddr).Port
	require.NoError(t, free.Close())
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{stacks.TCP()},
		Locals: []*messages.Endpoint{{IpAddress: "127.0.0.1", Port: uint32(port)}}}
	gone := errors.New("the caller gave up")

	claim := &StartClaim{}
	require.Nil(t, claim.Abandon(gone), "no listener yet")
	_, err = Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg, Claim: claim})
	require.ErrorIs(t, err, gone)
	again, err := net.Listen("tcp4", free.Addr().String())
	require.NoError(t, err, "an abandoned listener binds nothing")
	require.NoError(t, again.Close())

	claim = &StartClaim{}
	res, err := Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg, Claim: claim})
	require.NoError(t, err)
	st := res.(*ListenerStarted)
	pid := claim.Abandon(gone)
	require.NotNil(t, pid)
	require.True(t, pid.Equal(st.PID), "the caller is told the listener, to stop it")
	require.NoError(t, StopAndWait(ctx, sys, pid))
}
