package actors

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
)

// rawTCP is a TCP socket as a transport that a reader reads directly
// (rawWriter).
type rawTCP struct{ *net.TCPConn }

func (c rawTCP) WriteBuffers(b *net.Buffers) (int64, error) { return b.WriteTo(c.TCPConn) }

// heldPosts is the Process of a Poster that keeps what is posted to it, so
// that a test decides when (and on which goroutine) it is delivered.
type heldPosts chan any

func (h heldPosts) SendUserMessage(_ *actor.PID, msg any) { h <- msg }
func (heldPosts) SendSystemMessage(*actor.PID, any)       {}
func (heldPosts) Stop(*actor.PID)                         {}

// inlineReaderLink is an established Link whose stream is dialed, read
// by whoever holds the read token (a Receive inline, or a test in the
// reader goroutine's place); what its reads post is kept in the returned
// heldPosts. The Link's idle timer and read watch are released at the
// test's end.
func inlineReaderLink(t *testing.T, dialed net.Conn) (*Link, *streamReader, heldPosts) {
	link := NewLink(1, 0, 0, false)
	posts := make(heldPosts, 4)
	cr := &connReader{link: link, poster: Poster{proc: posts}, pace: recvPace{s: new(sockProps)}}
	cr.raw.init(rawTCP{dialed.(*net.TCPConn)}, new(ioCount), nil)
	sr := &cr.sr
	sr.cr, sr.dl, sr.inline = cr, dialed, true
	link.setReader(sr)
	link.mu.Lock()
	link.established, link.readAhead = true, false
	link.mu.Unlock()
	t.Cleanup(func() {
		link.mu.Lock()
		if link.idleTimer != nil {
			link.idleTimer.Stop()
		}
		link.mu.Unlock()
		sr.watch.release()
	})
	return link, sr, posts
}

// A blocking Receive that reads for itself, and whose request is served
// by a delivery that runs on another goroutine (the one running the
// framers and the connection actor when its read posted to them) between
// its read and its next decision, returns that delivery's message. It
// read again instead, waiting for bytes that were not coming: the peer had
// sent the whole message, and waited for its reply.
func TestReceiveServedBetweenInlineReadsReturns(t *testing.T) {
	dialed, peer := tcpPair(t)

	link, sr, posts := inlineReaderLink(t, dialed)
	require.True(t, sr.cr.raw.direct, "the socket is read directly")

	// the whole message is in the socket: the Receive's first read takes
	// it, and its delivery completes on another goroutine before the
	// Receive looks again
	msg := []byte("the whole message")
	_, err := peer.Write(msg)
	require.NoError(t, err)
	reads := 0
	hook := func() {
		reads++
		rd := (<-posts).(*readData)
		done := make(chan struct{})
		go func() {
			defer close(done)
			link.deliver([]RecvItem{{MessageID: 1, Data: rd.data, EndOfMessage: true}})
		}()
		<-done
	}
	testHookInlineRead.Store(&hook)
	defer testHookInlineRead.Store(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := link.Receive(ctx, -1, -1)
	require.NoError(t, err)
	require.NoError(t, ctx.Err(), "Receive returned only when its ctx ended: it read again for a message it had been given")
	require.Equal(t, 1, reads, "the Receive read for itself once")
	require.Equal(t, msg, res.Data)
	require.True(t, res.EndOfMessage)
}

// A blocking Receive that finds read bytes on their way to the first
// framer (rawPending: the framer runs on another goroutine just now, a
// held parse's resume) waits for them instead of reading. When those
// bytes complete nothing (the middle of a large message), the reader
// goroutine, waiting since the last request was served, must read for
// this one: the Receive's request is demand, and nobody else wakes the
// reader (doneRaw wakes it only when rawPending crosses its limit). It
// slept, and the Receive with it, for ever (CI: TestHoldHuntPeerFINWhileHolding).
func TestReceiveWaitingOnRawPendingWakesTheReader(t *testing.T) {
	dialed, _ := tcpPair(t)
	link, sr, _ := inlineReaderLink(t, dialed)
	link.mu.Lock()
	link.demand = true
	link.mu.Unlock()

	// the reader goroutine waits: reading on demand, no request
	acquired := make(chan bool, 1)
	go func() { acquired <- link.acquireRead(sr) }()
	require.Eventually(t, func() bool { return link.readerWaiting.Load() == 1 }, 5*time.Second, time.Millisecond)
	// its last read is on its way to the framer
	link.addRaw(100)

	ctx, cancel := context.WithCancel(context.Background())
	received := make(chan error, 1)
	go func() {
		_, err := link.Receive(ctx, -1, -1)
		received <- err
	}()
	require.Eventually(t, func() bool {
		link.mu.Lock()
		defer link.mu.Unlock()
		return len(link.reqs) == 1
	}, 5*time.Second, time.Millisecond)
	// the framer took those bytes: part of a message, nothing delivered
	link.doneRaw(100)

	select {
	case ok := <-acquired:
		require.True(t, ok, "the reader gave up")
		link.releaseRead(sr, false)
	case <-time.After(5 * time.Second):
		link.closeGate() // let it go
		<-acquired
		require.Fail(t, "the reader still waits while a Receive waits for bytes")
	}
	cancel()
	require.ErrorIs(t, <-received, context.Canceled)
}
