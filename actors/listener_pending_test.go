package actors

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestListenerStopAbortsQueuedConnectionReceived: a connection Ready while
// its listener is busy queues its connectionReceived in the listener's
// mailbox; when the listener stops before it handles that message,
// protoactor drops it (a Stop discards the queued user messages, with no
// dead letter). The connection must still be aborted: nobody would own it
// and its peer would wait forever.
//
// The window is made exact: the accept goroutine runs the listener, the
// root, the new group and the connection inline up to Ready, so the
// connection's connectionReceived is queued behind the listener's
// accepted. The tracer, called at the connection's ConnectionReceived
// transition right before that send, queues a StopListener first: the
// listener handles it next and stops with the connectionReceived queued.
func TestListenerStopAbortsQueuedConnectionReceived(t *testing.T) {
	fds := listenPendingFDs(t)
	var (
		listener atomic.Pointer[actor.PID]
		sysp     atomic.Pointer[System]
		once     sync.Once
		fired    = make(chan struct{})
	)
	sys := NewSystem(Config{Tracer: func(r *messages.TraceRecord) {
		if r.Kind != "state" || r.Event != "ConnectionReceived" {
			return
		}
		once.Do(func() {
			sysp.Load().AS.Root.Send(listener.Load(), &messages.StopListener{})
			close(fired)
		})
	}})
	sysp.Store(sys)
	base := sys.ActorCount() // the root (the event stream and dead letters are not counted)
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{stacks.TCP()},
		Locals: []*messages.Endpoint{{IpAddress: "127.0.0.1"}}}
	res, err := Ask(context.Background(), sys, sys.Root, &messages.StartListening{Config: cfg})
	require.NoError(t, err)
	st := res.(*ListenerStarted)
	listener.Store(st.PID)

	ap, ok := stacks.AddrPortOf(st.Addrs[0])
	require.True(t, ok)
	// the connection is aborted at once when fixed: even the dial may see
	// the reset (never a timeout)
	c, dialErr := net.Dial("tcp", ap.String())
	if dialErr == nil {
		defer c.Close()
	}
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the accepted connection did not become Ready")
	}
	<-st.Queue.Done()
	_, err = st.Queue.Accept(context.Background())
	require.ErrorIs(t, err, net.ErrClosed, "the connection was delivered: the window was missed")

	// the connection was not delivered: it must be aborted, not left open
	if dialErr == nil {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(),
			"the undelivered connection was left open (its listener stopped with its connectionReceived queued)")
		require.Error(t, err)
		_ = c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, sys.Shutdown(ctx))
	require.LessOrEqual(t, sys.ActorCount(), base, "actors left")
	require.Eventually(t, func() bool { return listenPendingFDs(t) <= fds }, 5*time.Second, 10*time.Millisecond,
		"fds: %d before, %d after", fds, listenPendingFDs(t))
}

// listenPendingFDs counts the open file descriptors of the process.
func listenPendingFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("needs /proc/self/fd to count file descriptors")
	}
	return len(ents)
}
