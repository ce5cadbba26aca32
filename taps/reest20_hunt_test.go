package taps

import (
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// BUG (reest20 hunt): a message whose write a writer goroutine had
// completed (over TLS and QUIC every write goes through one) when the
// transport was lost got a SendError, though the peer had it: the
// re-establishment dropped the write's report. TestAbortReportsAWrite-
// ThatCompletedAsSent fixed this for Abort and for a failure without a
// policy; under a re-establishment policy the application, told the
// message failed, sends it again and the peer gets it twice. It is Sent.
func TestReestLossReportsAWriteThatCompletedAsSent(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	st := &writeGateStack{Stack: stacks.TCP(), wrote: make(chan struct{}, 4)}
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithReestablishment(ReestablishPolicy{Initial: time.Hour, Max: time.Hour}))
	pre.AddFramer(framers.NewLengthPrefix())
	pre.stackList = []stacks.Stack{st}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	ev := watchReest(c)
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()

	outcome := make(chan error, 2)
	c.SendAsync([]byte("written before the loss"), nil, func(_ *Connection, err error) { outcome <- err })
	select {
	case <-st.wrote: // the whole message is in the socket
	case <-time.After(5 * time.Second):
		t.Fatal("the message was never written")
	}
	m, err := readFrame(peer)
	require.NoError(t, err)
	require.Equal(t, "written before the loss", m, "the peer got it")
	peer.Close() // the transport is lost: re-establishment
	select {
	case err := <-outcome:
		require.NoError(t, err, "the message was written whole before the loss: Sent")
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome for the message")
	}
	require.Equal(t, "reestablishing", <-ev.ch)
	c.Abort()
	requireDone(t, c)
}
