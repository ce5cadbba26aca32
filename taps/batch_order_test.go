package taps

import (
	"bufio"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// SendAsync calls of one goroutine keep their order while Batches of
// another goroutine open and end around them (a SendAsync made while a
// Batch is open joins it): the batch is handed to the connection before a
// SendAsync that comes after its end can be. The batch was taken and its
// SendBatch posted after the Batch had let go, and a SendAsync in between
// went first: its message overtook the earlier ones of the batch (every
// run of 4000 messages, before).
func TestSendAsyncKeepsItsOrderAcrossAnotherGoroutinesBatches(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())

	const n = 4000
	var stop atomic.Bool
	batcher := make(chan struct{})
	go func() {
		defer close(batcher)
		for !stop.Load() {
			c.Batch(func() { runtime.Gosched() })
		}
	}()
	failed := make(chan error, 1)
	for i := range n {
		c.SendAsync([]byte(strconv.Itoa(i)), nil, func(_ *Connection, err error) {
			if err != nil {
				select {
				case failed <- err:
				default:
				}
			}
		})
	}
	br := bufio.NewReader(peer)
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(10*time.Second)))
	var got []string
	for range n {
		m, err := readFrame(br)
		require.NoError(t, err)
		got = append(got, m)
	}
	stop.Store(true)
	<-batcher
	select {
	case err := <-failed:
		t.Fatalf("a SendAsync failed: %v", err)
	default:
	}
	for i, m := range got {
		require.Equal(t, strconv.Itoa(i), m, "message %d of %d: out of order (%s)", i, n, fmt.Sprint(got[max(0, i-3):min(n, i+3)]))
	}
	c.Abort()
	requireDone(t, c)
}
