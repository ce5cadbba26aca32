package actors

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSerialExecReceivedGoesBeforeAQueuedTerminal: while the terminal
// handler waits to run, a received Message's handler is queued before it
// (in the order they come), while other calls (a ReceiveError, a late
// SendError, Done's closing) go after it; once the terminal handler runs,
// everything goes after it.
func TestSerialExecReceivedGoesBeforeAQueuedTerminal(t *testing.T) {
	var e serialExec
	var mu sync.Mutex
	var got []string
	rec := func(s string) func() {
		return func() { mu.Lock(); got = append(got, s); mu.Unlock() }
	}
	hold, held := make(chan struct{}), make(chan struct{})
	fin := make(chan struct{})
	e.submitAs("first", func() { close(held); <-hold }) // the handler running as the end comes
	<-held
	e.submitTerminal("Closed handler", func() {
		rec("Closed")()
		e.submitReceived(rec("Received late")) // asked for once the terminal handler runs
		e.submitAs("barrier", func() { close(fin) })
	})
	e.submitAs("done", rec("Done"))
	e.submitReceived(rec("Received 1"))
	e.submitAs("ReceiveAsync handler", rec("ReceiveError"))
	e.submitReceived(rec("Received 2"))
	close(hold)
	<-fin
	require.Equal(t, []string{"Received 1", "Received 2", "Closed", "Done", "ReceiveError", "Received late"}, got)
	require.Zero(t, e.term)
}
