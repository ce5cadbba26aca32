package actors

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// A connection that re-established replaced a transport whose socket is
// still held (a QUIC session ending after its linger): Done waits for the
// release of that socket too, not only for the last transport's. Done
// came with the last socket's release before, while the earlier one still
// held its port.
func TestLinkDoneWaitsForEveryReleasedSocket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLink(1, 0, 0, false)
		replaced, last := make(chan struct{}), make(chan struct{})
		l.setReleased(replaced) // dropTransport, at the re-establishment
		l.setReleased(last)     // the connection's end
		l.setReleased(last)     // noted twice (an abort after a close): the same release
		l.emitTerminal(EvClosed, nil)

		close(last)
		synctest.Wait()
		require.False(t, isClosed(l.Done()), "Done before the replaced transport's socket was released")
		close(replaced)
		synctest.Wait()
		require.True(t, isClosed(l.Done()), "Done never closed")
	})
}

// A replaced transport whose socket was released already adds no wait.
func TestLinkDoneReleasedBeforeAddsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLink(1, 0, 0, false)
		replaced, last := make(chan struct{}), make(chan struct{})
		close(replaced)
		l.setReleased(replaced)
		l.setReleased(last)
		l.emitTerminal(EvClosed, nil)
		close(last)
		synctest.Wait()
		require.True(t, isClosed(l.Done()), "Done never closed")
	})
}
