package taps

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// writeGateStack is TCP whose transports hide their socket (every write
// goes to the connection's writer goroutine, as over TLS) and, once armed,
// finish each write and then hold it until Abort: the write is complete,
// its report not yet back at the connection, when the Abort comes.
type writeGateStack struct {
	stacks.Stack
	wrote chan struct{} // one per write held
}

type writeGate struct {
	stacks.Transport
	s         *writeGateStack
	once      sync.Once
	abortedCh chan struct{}
}

func (s *writeGateStack) Dial(ctx context.Context, r netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.Stack.Dial(ctx, r, o)
	if err != nil {
		return nil, err
	}
	return &writeGate{Transport: t, s: s, abortedCh: make(chan struct{})}, nil
}

func (g *writeGate) Write(b []byte) (int, error) {
	n, err := g.Transport.Write(b)
	g.s.wrote <- struct{}{}
	<-g.abortedCh
	return n, err
}

func (g *writeGate) Abort() error {
	g.once.Do(func() { close(g.abortedCh) })
	return g.Transport.Abort()
}

func (g *writeGate) Close() error {
	g.once.Do(func() { close(g.abortedCh) })
	return g.Transport.Close()
}

// A message the transport took whole before an Abort came is Sent (it
// reaches the peer): the Abort drops the queued messages only, and must
// not report a SendError for one whose write completed but whose report
// had not yet reached the connection (over TLS and QUIC, whose writes
// all go through a writer goroutine, the peer got messages reported
// aborted).
func TestAbortReportsAWriteThatCompletedAsSent(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	st := &writeGateStack{Stack: stacks.TCP(), wrote: make(chan struct{}, 4)}
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	pre.AddFramer(framers.NewLengthPrefix())
	pre.stackList = []stacks.Stack{st}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()

	outcome := make(chan error, 2)
	c.SendAsync([]byte("written before the abort"), nil, func(_ *Connection, err error) { outcome <- err })
	select {
	case <-st.wrote: // the whole message is in the socket
	case <-time.After(5 * time.Second):
		t.Fatal("the message was never written")
	}
	c.Abort()
	select {
	case err := <-outcome:
		require.NoError(t, err, "the message was written whole before the Abort: Sent")
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome for the message")
	}
	m, err := readFrame(peer)
	require.NoError(t, err)
	require.Equal(t, "written before the abort", m, "the peer got it")
	requireDone(t, c)
	require.ErrorIs(t, c.Err(), ErrAborted)
}
