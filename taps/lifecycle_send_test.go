package taps

import (
	"context"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// A blocking Send inside Batch is not batched (see Batch): it returns at
// its Sent event, which a batched send would get only after fn returns.
func TestBlockingSendInsideBatchIsNotHeldByIt(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var sendErr error
	c.Batch(func() {
		c.SendAsync([]byte("batched"), nil, nil)
		sendErr = c.Send(ctx, []byte("blocking"), nil)
	})
	require.NoError(t, sendErr, "a blocking Send inside Batch must not wait for the batch's end")
	for _, want := range []string{"batched", "blocking"} {
		m, err := readFrame(peer)
		require.NoError(t, err)
		require.Equal(t, want, m)
	}
	c.Abort()
	requireDone(t, c)
}

// A Ready handler set after the connection's terminal handler ran is not
// called: no handler runs after the terminal event's (actors.Handlers).
func TestReadyHandlerSetAfterClosedIsNotCalledAfterIt(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	c := initiateTo(t, sys, r, framers.NewLengthPrefix())
	peer, err := ln.Accept()
	require.NoError(t, err)
	var events []string // appended on the connection's event goroutine only
	c.OnConnectionError(func(*Connection, error) { events = append(events, "ConnectionError") })
	c.Abort()
	requireDone(t, c)
	peer.Close()
	c.OnReady(func(*Connection) { events = append(events, "Ready") })
	barrier := make(chan struct{})
	c.link.Submit(func() { close(barrier) }) // after anything OnReady queued
	<-barrier
	require.Equal(t, []string{"ConnectionError"}, events)
}
