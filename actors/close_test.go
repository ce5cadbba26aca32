package actors

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// quietPipe is a pipe transport that says whether it is quiescent
// (stacks.QuiescentTransport) and counts its CloseWrite calls.
type quietPipe struct {
	*pipeTransport
	quiet       bool
	closeWrites atomic.Int32
}

func (q *quietPipe) Quiescent() bool { return q.quiet }
func (q *quietPipe) CloseWrite() error {
	q.closeWrites.Add(1)
	return q.pipeTransport.CloseWrite()
}

// A graceful Close of a quiescent transport closes it at once; any other
// sends its end of stream first (CloseWrite) and waits for the peer's.
func TestCloseQuiescentTransportSkipsCloseWrite(t *testing.T) {
	for _, quiet := range []bool{true, false} {
		sys := NewSystem(Config{})
		t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
		var made atomic.Pointer[quietPipe]
		ln := newFakeListener(1, nil)
		ln.wrap = func(p *pipeTransport) stacks.Transport {
			q := &quietPipe{pipeTransport: p, quiet: quiet}
			made.Store(q)
			return q
		}
		cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{&fakeListenStack{ln: ln}},
			Framers: []framers.Framer{framers.NewLengthPrefix()}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg})
		require.NoError(t, err)
		s, err := res.(*ListenerStarted).Queue.Accept(ctx)
		require.NoError(t, err)
		sys.AS.Root.Send(s.Conn, &messages.CloseConnection{})
		select {
		case <-s.Link.Done():
		case <-ctx.Done():
			t.Fatalf("quiet=%v: not Closed", quiet)
		}
		q := made.Load()
		require.True(t, q.closed.Load(), "quiet=%v: the transport is closed", quiet)
		want := int32(1)
		if quiet {
			want = 0
		}
		require.Equal(t, want, q.closeWrites.Load(), "quiet=%v: CloseWrite calls", quiet)
		require.Equal(t, Closed, s.Link.State())
	}
}
