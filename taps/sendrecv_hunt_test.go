package taps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// sendRecvHuntPair is a connected pair over loopback: TCP with a length
// prefix framer ("tcp+lp"), TCP without one ("tcp"), or QUIC with a length
// prefix framer ("quic").
func sendRecvHuntPair(t *testing.T, sys *System, kind string) (c, s *Connection) {
	t.Helper()
	ctx := testCtx(t)
	switch kind {
	case "tcp":
		ln := listenLoopback(t, sys)
		t.Cleanup(ln.Stop)
		return dialAccept(t, sys, ln)
	case "tcp+lp":
		ln := listenLoopback(t, sys, framers.NewLengthPrefix())
		t.Cleanup(ln.Stop)
		return dialAccept(t, sys, ln, framers.NewLengthPrefix())
	case "quic":
		pki := newTestPKI(t)
		ln := quicListen(t, ctx, sys, pki, quicOnly(t))
		c, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
		require.NoError(t, err)
		// the server sees the stream once data arrives on it
		require.NoError(t, c.Send(ctx, []byte("hello"), nil))
		s, err = ln.Accept(ctx)
		require.NoError(t, err)
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, "hello", string(m.Data))
		return c, s
	}
	t.Fatalf("unknown kind %q", kind)
	return nil, nil
}

// pattern is n bytes that differ from message to message (seed).
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// TestSendRecvHuntSendPartialIsOneMessage: parts sent with SendPartial and
// one MessageContext arrive as one Message over a framer (TCP and QUIC),
// and as the same bytes, in order, without one.
func TestSendRecvHuntSendPartialIsOneMessage(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			mc := NewMessageContext()
			parts := [][]byte{[]byte("alpha-"), pattern(40<<10, 1), []byte("-omega")}
			for i, p := range parts {
				require.NoError(t, c.SendPartial(ctx, p, mc, i == len(parts)-1))
			}
			want := bytes.Join(parts, nil)
			if kind == "tcp" {
				var got []byte
				for len(got) < len(want) {
					m, err := s.Receive(ctx)
					require.NoError(t, err)
					got = append(got, m.Data...)
				}
				require.True(t, bytes.Equal(want, got))
				return
			}
			m, err := s.Receive(ctx)
			require.NoError(t, err)
			require.True(t, m.EndOfMessage)
			require.True(t, bytes.Equal(want, m.Data), "got %d bytes, want %d", len(m.Data), len(want))
		})
	}
}

// TestSendRecvHuntSendWhileAPartialMessageIsOpen: Messages sent while a
// partial Message is open wait behind it (SendPartial's documentation):
// the peer gets the partial Message whole, then the others, and a
// blocking Send of another goroutine returns once the partial one ended.
func TestSendRecvHuntSendWhileAPartialMessageIsOpen(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			mc := NewMessageContext()
			require.NoError(t, c.SendPartial(ctx, []byte("part1-"), mc, false))
			asyncSent := make(chan error, 1)
			c.SendAsync([]byte("async"), nil, func(_ *Connection, err error) { asyncSent <- err })
			blockingSent := make(chan error, 1)
			go func() { blockingSent <- c.Send(ctx, []byte("blocking"), nil) }()
			require.NoError(t, c.SendPartial(ctx, []byte("part2"), mc, true))
			require.NoError(t, <-asyncSent)
			require.NoError(t, <-blockingSent)
			got := map[string]bool{}
			m, err := s.Receive(ctx)
			require.NoError(t, err)
			require.True(t, m.EndOfMessage)
			require.Equal(t, "part1-part2", string(m.Data), "the open message goes first, whole")
			for range 2 {
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				got[string(m.Data)] = true
			}
			require.Equal(t, map[string]bool{"async": true, "blocking": true}, got)
		})
	}
}

// TestSendRecvHuntAbortWithAPartialMessageOpen: the peer never gets a
// partial Message as complete when the sender aborts, or closes, before
// its last part.
func TestSendRecvHuntAbortWithAPartialMessageOpen(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		for _, end := range []string{"Abort", "Close"} {
			t.Run(kind+"/"+end, func(t *testing.T) {
				sys := newTestSystem(t)
				c, s := sendRecvHuntPair(t, sys, kind)
				ctx := testCtx(t)
				mc := NewMessageContext()
				require.NoError(t, c.SendPartial(ctx, pattern(3000, 2), mc, false))
				if end == "Abort" {
					c.Abort()
				} else {
					require.NoError(t, c.Close())
				}
				<-c.Done()
				for {
					m, err := s.Receive(ctx)
					if err != nil {
						var re *ReceiveError
						require.ErrorAs(t, err, &re)
						return
					}
					require.False(t, m.EndOfMessage, "a truncated message (%d bytes) arrived as complete", len(m.Data))
				}
			})
		}
	}
}

// TestSendRecvHuntMaxLengthPartsAreByteExact: a message larger than
// maxLength arrives as ReceivedPartial parts of maxLength bytes, the last
// with EndOfMessage, and the parts are the message.
func TestSendRecvHuntMaxLengthPartsAreByteExact(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			for _, size := range []int{1500, 64 << 10} {
				msg := pattern(size, byte(size))
				require.NoError(t, c.Send(ctx, msg, nil))
				const maxLen = 1000
				var got []byte
				for {
					m, err := s.Receive(ctx, MaxLength(maxLen))
					require.NoError(t, err)
					require.LessOrEqual(t, len(m.Data), maxLen)
					got = append(got, m.Data...)
					if m.EndOfMessage {
						break
					}
					require.Len(t, m.Data, maxLen, "a part before the last is maxLength long")
				}
				require.True(t, bytes.Equal(msg, got), "size %d: got %d bytes", size, len(got))
			}
		})
	}
}

// TestSendRecvHuntReleaseOfTheLastPartKeepsTheEarlierParts: the parts of a
// large message received with MaxLength share one buffer; releasing the
// last part must not hand back memory the earlier parts' Data (still held)
// are in: the next large message would be read over them.
func TestSendRecvHuntReleaseOfTheLastPartKeepsTheEarlierParts(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			const size = 256 << 10
			first := pattern(size, 1)
			require.NoError(t, c.Send(ctx, first, nil))
			var kept [][]byte
			for {
				m, err := s.Receive(ctx, MaxLength(size/2))
				require.NoError(t, err)
				if m.EndOfMessage {
					m.Release()
					break
				}
				kept = append(kept, m.Data)
			}
			require.NotEmpty(t, kept)
			for i := range 4 {
				require.NoError(t, c.Send(ctx, pattern(size, byte(10+i)), nil))
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				m.Release()
			}
			require.True(t, bytes.Equal(first[:len(kept[0])], kept[0]), "a kept part was overwritten")
		})
	}
}

// TestSendRecvHuntKeptMessagesAreNotOverwritten: messages the application
// keeps (no Release) while it receives and releases many more keep their
// bytes, as do messages released twice or released on another connection.
func TestSendRecvHuntKeptMessagesAreNotOverwritten(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			c2, s2 := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			sizes := []int{100, 20 << 10, 70 << 10, 300 << 10}
			type keptMsg struct {
				m    *Message
				want []byte
			}
			var kept []keptMsg
			for i := range 40 {
				want := pattern(sizes[i%len(sizes)], byte(i))
				require.NoError(t, c.Send(ctx, want, nil))
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				require.True(t, bytes.Equal(want, m.Data), "#%d", i)
				switch i % 4 {
				case 0:
					kept = append(kept, keptMsg{m, want})
				case 1:
					m.Release()
					m.Release() // twice: harmless
					require.Nil(t, m.Data)
				default:
					// a message of this connection handed to another
					// connection's receive loop, released there: still
					// only this connection's buffer
					require.NoError(t, c2.Send(ctx, want, nil))
					m2, err := s2.Receive(ctx)
					require.NoError(t, err)
					m.Release()
					m2.Release()
				}
			}
			for i, k := range kept {
				require.True(t, bytes.Equal(k.want, k.m.Data), "kept message #%d was overwritten", i)
			}
		})
	}
}

// TestSendRecvHuntMaxLengthZeroOrNegative: a maxLength below one cannot be
// met by any message; Receive says so with an error at once, before it
// takes (and loses) anything.
func TestSendRecvHuntMaxLengthZeroOrNegative(t *testing.T) {
	sys := newTestSystem(t)
	c, s := sendRecvHuntPair(t, sys, "tcp+lp")
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("whole"), nil))
	for _, n := range []int{0, -1} {
		m, err := s.Receive(ctx, MaxLength(n))
		require.Error(t, err, "MaxLength(%d) returned %q", n, func() string {
			if m != nil {
				return string(m.Data)
			}
			return ""
		}())
		var re *ReceiveError
		require.ErrorAs(t, err, &re)
	}
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "whole", string(m.Data))
	require.True(t, m.EndOfMessage)
}

// TestSendRecvHuntConcurrentReceivesGetEachMessageOnce: goroutines calling
// Receive at once, some with contexts that end, get every message exactly
// once between them.
func TestSendRecvHuntConcurrentReceivesGetEachMessageOnce(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			const n, workers = 400, 8
			var mu sync.Mutex
			seen := map[string]int{}
			var wg sync.WaitGroup
			done := make(chan struct{})
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						rctx, cancel := ctx, context.CancelFunc(func() {})
						if w%2 == 1 && i%3 == 0 {
							// a Receive whose ctx ends at once or soon
							rctx, cancel = context.WithCancel(ctx)
							go cancel()
						}
						m, err := s.Receive(rctx)
						cancel()
						if errors.Is(err, context.Canceled) && ctx.Err() == nil {
							continue
						}
						if err != nil {
							return
						}
						mu.Lock()
						seen[string(m.Data)]++
						total := len(seen)
						mu.Unlock()
						m.Release()
						if total == n {
							close(done)
						}
					}
				}()
			}
			for i := range n {
				require.NoError(t, c.Send(ctx, fmt.Appendf(nil, "m%04d", i), nil))
			}
			select {
			case <-done:
			case <-ctx.Done():
				mu.Lock()
				t.Fatalf("only %d of %d messages arrived", len(seen), n)
			}
			c.Abort()
			wg.Wait()
			for k, v := range seen {
				require.Equal(t, 1, v, "message %s delivered %d times", k, v)
			}
		})
	}
}

// TestSendRecvHuntReceiveAsyncAndReceiveInCallOrder: ReceiveAsync and
// Receive calls get the messages in the order of the calls.
func TestSendRecvHuntReceiveAsyncAndReceiveInCallOrder(t *testing.T) {
	sys := newTestSystem(t)
	c, s := sendRecvHuntPair(t, sys, "tcp+lp")
	ctx := testCtx(t)
	async := make(chan string, 3)
	onMsg := func(_ *Connection, m *Message, err error) {
		if err != nil {
			async <- "error: " + err.Error()
			return
		}
		async <- string(m.Data)
	}
	s.ReceiveAsync(onMsg) // call 1
	s.ReceiveAsync(onMsg) // call 2
	for i := range 4 {
		require.NoError(t, c.Send(ctx, fmt.Appendf(nil, "m%d", i), nil))
	}
	m, err := s.Receive(ctx) // call 3
	require.NoError(t, err)
	require.Equal(t, "m2", string(m.Data))
	s.ReceiveAsync(onMsg) // call 4
	require.Equal(t, "m0", <-async)
	require.Equal(t, "m1", <-async)
	require.Equal(t, "m3", <-async)
}

// TestSendRecvHuntEmptyMessages: over a framer, an empty (or nil) Send is
// an empty Message at the peer, in its place among the others.
func TestSendRecvHuntEmptyMessages(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendRecvHuntPair(t, sys, kind)
			ctx := testCtx(t)
			require.NoError(t, c.Send(ctx, nil, nil))
			require.NoError(t, c.Send(ctx, []byte{}, nil))
			require.NoError(t, c.Send(ctx, []byte("after"), nil))
			for _, want := range []string{"", "", "after"} {
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				require.True(t, m.EndOfMessage)
				require.Equal(t, want, string(m.Data))
			}
		})
	}
}

// TestSendRecvHuntLargeSendWithASmallSendBuffer: a 64 MiB Send through a
// 64 KiB send buffer completes (the buffer bounds what is queued, not the
// size of one message), the Sends after it report Sent in order, and the
// peer gets every byte.
func TestSendRecvHuntLargeSendWithASmallSendBuffer(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix(framers.WithMaxMessageSize(128<<20)))
	t.Cleanup(ln.Stop)
	ctx := testCtx(t)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	pre := NewPreconnection(WithSystem(sys), WithSendBuffer(64<<10),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())))
	pre.AddFramer(framers.NewLengthPrefix(framers.WithMaxMessageSize(128 << 20)))
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	big := pattern(64<<20, 3)
	var order []int
	var mu sync.Mutex
	sentAll := make(chan struct{})
	go func() {
		defer close(sentAll)
		for i := range 4 {
			var msg []byte
			if i == 1 {
				msg = big
			} else {
				msg = fmt.Appendf(nil, "small%d", i)
			}
			if c.Send(ctx, msg, nil) == nil {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			}
		}
	}()
	for i := range 4 {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		if i == 1 {
			require.True(t, bytes.Equal(big, m.Data), "the large message differs")
		} else {
			require.Equal(t, fmt.Sprintf("small%d", i), string(m.Data))
		}
	}
	<-sentAll
	require.Equal(t, []int{0, 1, 2, 3}, order)
}

// TestSendRecvHuntMinIncompleteLength: on a byte stream without a framer a
// Receive with MinIncompleteLength waits for that many bytes, not for the
// first that arrive.
func TestSendRecvHuntMinIncompleteLength(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s := sendRecvHuntPair(t, sys, "tcp")
	require.NoError(t, c.Send(ctx, []byte("abcde"), nil))
	require.NoError(t, c.Send(ctx, []byte("fghij"), nil))
	m, err := s.Receive(ctx, MinIncompleteLength(10))
	require.NoError(t, err)
	require.False(t, m.EndOfMessage)
	require.Equal(t, "abcdefghij", string(m.Data), "fewer bytes than MinIncompleteLength, or other ones")
}
