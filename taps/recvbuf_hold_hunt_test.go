package taps

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// The first framer's hold (actors/readside.go, setHeld): with a small
// receive buffer, a lone framer stops parsing a read once its deliveries
// used up the credit left, and parses on when the application frees
// credit. These tests make it hold all the time (a numbered mix of tiny
// messages and messages larger than the whole buffer) and check that no
// message is lost, duplicated, reordered or cut, that the peer's FIN or
// RST and the application's Close or Abort while it holds end the
// connection promptly, and (TestMain's goleak) that no goroutine is left.

// holdMsgs is a numbered mix of messages: mostly tiny (0-8 bytes), about
// one in eight larger than any receive buffer of these tests (40-200
// KiB). Message i's bytes depend on i, so a message lost, duplicated or
// out of order shows in the bytes of the ones that follow.
type holdMsgs struct {
	sizes []int
	lines bool // bytes of the lines framer: no '\n'
}

func newHoldMsgs(t *testing.T, n int, lines bool) holdMsgs { return newHoldMsgsLead(t, n, 0, lines) }

// newHoldMsgsLead starts the mix with lead tiny messages: more than any
// receive buffer of these tests may queue (lead*recvItemCost), in the
// first read, so that the framer holds before the application receives.
func newHoldMsgsLead(t *testing.T, n, lead int, lines bool) holdMsgs {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	m := holdMsgs{sizes: make([]int, n), lines: lines}
	for i := range m.sizes {
		if i >= lead && r.IntN(8) == 0 {
			m.sizes[i] = 40<<10 + r.IntN(160<<10)
		} else {
			m.sizes[i] = r.IntN(9)
		}
	}
	return m
}

// body is message i's bytes.
func (m holdMsgs) body(i int) []byte {
	b := make([]byte, m.sizes[i])
	for j := range b {
		v := i*131 + j*7 + j>>9
		if m.lines {
			b[j] = 'a' + byte(v%26)
		} else {
			b[j] = byte(v)
		}
	}
	return b
}

// wire is messages [from, to) framed for the length-prefix or lines framer.
func (m holdMsgs) wire(from, to int) []byte {
	var out []byte
	for i := from; i < to; i++ {
		if !m.lines {
			out = binary.BigEndian.AppendUint32(out, uint32(m.sizes[i]))
		}
		out = append(out, m.body(i)...)
		if m.lines {
			out = append(out, '\n')
		}
	}
	return out
}

// check fails unless data is message i, whole.
func (m holdMsgs) check(t *testing.T, i int, data []byte) {
	t.Helper()
	if want := m.body(i); string(want) != string(data) {
		require.Failf(t, "wrong message", "message %d: got %d bytes, want %d (first difference at %d)", i, len(data), len(want), firstDiff(want, data))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// writeChunked writes b in chunks of random sizes (so that reads end
// anywhere in the messages), and reports the error on the returned
// channel. The first chunk is at least firstChunk bytes, so that a lead
// of tiny messages (newHoldMsgsLead) comes in one read: its pieces cost
// more than the framer's free allowance and the buffer together, so the
// framer holds. (A first chunk of a few hundred bytes parsed whole and
// filled the credit exactly: the reader stopped with nothing held, and
// waitHeld waited in vain.)
func writeChunked(w net.Conn, b []byte) <-chan error {
	const firstChunk = 4 << 10
	done := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(uint64(len(b)), 3))
		for first := true; len(b) > 0; first = false {
			n := min(len(b), 1+r.IntN(64<<10))
			if first {
				n = min(len(b), max(n, firstChunk))
			}
			if _, err := w.Write(b[:n]); err != nil {
				done <- err
				return
			}
			b = b[n:]
		}
		done <- nil
	}()
	return done
}

// waitHeld waits until the first framer of c holds bytes for want of
// credit and the reader waits for the application.
func waitHeld(ctx context.Context, t *testing.T, c *Connection) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		_, _, full := c.link.RecvCreditForTest()
		if full && c.link.HeldForTest() {
			return
		}
		select {
		case <-ctx.Done():
			_, charged, full := c.link.RecvCreditForTest()
			require.FailNow(t, "the framer never held", "held %v, full %v, charged %d", c.link.HeldForTest(), full, charged)
		case <-tick.C:
		}
	}
}

type holdFramer struct {
	name  string
	f     func() framers.Framer
	lines bool
	buf   int
}

func holdFramers() []holdFramer {
	lp := func() framers.Framer { return framers.NewLengthPrefix() }
	return []holdFramer{
		{"length-prefix-8k", lp, false, 8 << 10},
		{"length-prefix-64k", lp, false, 64 << 10},
		{"lines-16k", func() framers.Framer { return framers.NewLines() }, true, 16 << 10},
	}
}

// pace slows the receiver now and then, so that the sender runs ahead
// and the framer holds (pacing, not a wait for an event).
func pace(i int) {
	if i%64 == 63 {
		time.Sleep(time.Millisecond)
	}
}

// stuckState records s's receive side as its test's ctx ends (a receive
// waits then, its request still queued), for the failure message.
func stuckState(ctx context.Context, t *testing.T, s *Connection) func() string {
	var state atomic.Pointer[string]
	stop := context.AfterFunc(ctx, func() {
		st := s.link.RecvStateForTest()
		state.Store(&st)
	})
	t.Cleanup(func() { stop() })
	return func() string {
		if st := state.Load(); st != nil {
			return *st
		}
		return s.link.RecvStateForTest()
	}
}

// holdMsgCount messages per test, the first holdLead of them tiny where
// the framer must hold before the application receives (300 pieces cost
// 75 KiB, above the largest buffer here).
const (
	holdMsgCount = 600
	holdLead     = 300
)

func TestHoldHuntReceiveInOrder(t *testing.T) {
	for _, hf := range holdFramers() {
		for _, release := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/release=%v", hf.name, release), func(t *testing.T) {
				ctx := testCtx(t)
				s, w := floodServer(t, hf.f(), hf.buf)
				m := newHoldMsgs(t, holdMsgCount, hf.lines)
				werr := writeChunked(w, m.wire(0, holdMsgCount))
				state := stuckState(ctx, t, s)
				for i := range holdMsgCount {
					msg, err := s.Receive(ctx)
					require.NoError(t, err, "message %d: %s", i, state())
					require.True(t, msg.EndOfMessage)
					m.check(t, i, msg.Data)
					if release {
						msg.Release()
						require.Nil(t, msg.Data)
					}
					pace(i)
				}
				require.NoError(t, <-werr)
				// nothing more: no duplicate on its way
				short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				defer cancel()
				_, err := s.Receive(short)
				require.ErrorIs(t, err, context.DeadlineExceeded)
			})
		}
	}
}

func TestHoldHuntReceiveAsyncInOrder(t *testing.T) {
	for _, hf := range holdFramers() {
		for _, outstanding := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/outstanding=%d", hf.name, outstanding), func(t *testing.T) {
				ctx := testCtx(t)
				s, w := floodServer(t, hf.f(), hf.buf)
				m := newHoldMsgs(t, holdMsgCount, hf.lines)
				type res struct {
					data []byte
					eom  bool
					err  error
				}
				got := make(chan res, holdMsgCount+outstanding)
				handler := func(_ *Connection, msg *Message, err error) {
					if err != nil {
						got <- res{err: err}
						return
					}
					got <- res{data: msg.Data, eom: msg.EndOfMessage}
				}
				werr := writeChunked(w, m.wire(0, holdMsgCount))
				state := stuckState(ctx, t, s)
				for range outstanding {
					s.ReceiveAsync(handler)
				}
				for i := range holdMsgCount {
					var r res
					select {
					case r = <-got:
					case <-ctx.Done():
						require.FailNow(t, "no message", "message %d of %d: %s", i, holdMsgCount, state())
					}
					require.NoError(t, r.err, "message %d", i)
					require.True(t, r.eom)
					m.check(t, i, r.data)
					if i+outstanding < holdMsgCount {
						s.ReceiveAsync(handler)
					}
					pace(i)
				}
				require.NoError(t, <-werr)
				select {
				case r := <-got:
					require.FailNow(t, "a message too many", "%d bytes, err %v", len(r.data), r.err)
				default:
				}
			})
		}
	}
}

func TestHoldHuntPartialReceives(t *testing.T) {
	for _, hf := range holdFramers() {
		t.Run(hf.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, w := floodServer(t, hf.f(), hf.buf)
			m := newHoldMsgs(t, holdMsgCount, hf.lines)
			werr := writeChunked(w, m.wire(0, holdMsgCount))
			r := rand.New(rand.NewPCG(uint64(hf.buf), 9))
			parts := 0
			state := stuckState(ctx, t, s)
			for i := range holdMsgCount {
				var whole []byte
				for {
					var opts []ReceiveOption
					switch r.IntN(3) {
					case 0:
						opts = []ReceiveOption{MinIncompleteLength(1 + r.IntN(16<<10))}
					case 1:
						opts = []ReceiveOption{MaxLength(1 + r.IntN(32<<10))}
					case 2:
						opts = []ReceiveOption{MinIncompleteLength(1 + r.IntN(4<<10)), MaxLength(1 + r.IntN(8<<10))}
					}
					msg, err := s.Receive(ctx, opts...)
					require.NoError(t, err, "message %d: %s", i, state())
					whole = append(whole, msg.Data...)
					if r.IntN(2) == 0 {
						msg.Release()
					}
					if msg.EndOfMessage {
						break
					}
					parts++
					require.Less(t, len(whole), m.sizes[i]+1, "message %d grows past its size", i)
				}
				m.check(t, i, whole)
				pace(i)
			}
			require.NoError(t, <-werr)
			require.Positive(t, parts, "no partial receive")
		})
	}
}

// The peer's FIN while the framer holds: every message, then the end.
func TestHoldHuntPeerFINWhileHolding(t *testing.T) {
	for _, hf := range holdFramers() {
		for _, async := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/async=%v", hf.name, async), func(t *testing.T) {
				ctx := testCtx(t)
				s, w := floodServer(t, hf.f(), hf.buf)
				m := newHoldMsgsLead(t, holdMsgCount, holdLead, hf.lines)
				werr := writeChunked(w, m.wire(0, holdMsgCount))
				waitHeld(ctx, t, s)
				// the FIN follows the messages: the writes end once the
				// application has taken enough of them
				fin := make(chan error, 1)
				go func() {
					if err := <-werr; err != nil {
						fin <- err
						return
					}
					fin <- w.(*net.TCPConn).CloseWrite()
				}()
				recv := func() (*Message, error) {
					if !async {
						return s.Receive(ctx)
					}
					type res struct {
						m   *Message
						err error
					}
					ch := make(chan res, 1)
					s.ReceiveAsync(func(_ *Connection, msg *Message, err error) { ch <- res{msg, err} })
					select {
					case r := <-ch:
						return r.m, r.err
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				state := stuckState(ctx, t, s)
				for i := range holdMsgCount {
					msg, err := recv()
					require.NoError(t, err, "message %d: %s", i, state())
					m.check(t, i, msg.Data)
				}
				require.NoError(t, <-fin)
				_, err := recv()
				require.ErrorIs(t, err, ErrClosed)
				require.NotErrorIs(t, err, context.DeadlineExceeded)
			})
		}
	}
}

// The peer's FIN comes with the last bytes while the framer holds, read
// with them before any receive: the end of stream waits behind the held
// bytes, and every message comes before it.
func TestHoldHuntFINHeldWithTheBytes(t *testing.T) {
	for _, hf := range holdFramers() {
		t.Run(hf.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, w := floodServer(t, hf.f(), hf.buf)
			m := newHoldMsgs(t, 400, hf.lines)
			// tiny messages only (under 4 KiB), read in one go, costing
			// (400 pieces) more than any buffer here
			for i := range m.sizes {
				m.sizes[i] %= 9
			}
			_, err := w.Write(m.wire(0, len(m.sizes)))
			require.NoError(t, err)
			require.NoError(t, w.(*net.TCPConn).CloseWrite())
			waitEOS := time.NewTicker(time.Millisecond)
			defer waitEOS.Stop()
			// the reader reads ahead until the first Receive: it reads the
			// FIN too, which the framer holds behind the bytes
			for !s.link.HeldForTest() {
				select {
				case <-ctx.Done():
					require.FailNow(t, "the framer never held")
				case <-waitEOS.C:
				}
			}
			for i := range m.sizes {
				msg, err := s.Receive(ctx)
				require.NoError(t, err, "message %d", i)
				m.check(t, i, msg.Data)
			}
			_, err = s.Receive(ctx)
			require.ErrorIs(t, err, ErrClosed)
		})
	}
}

// The peer's RST while the framer holds: the connection fails with a
// ConnectionError unwrapping to the reset, the receives end (with the
// messages received before it, in order and whole: the message the RST
// cut is never delivered, by the lines framer either), nothing hangs.
func TestHoldHuntPeerResetWhileHolding(t *testing.T) {
	for _, hf := range holdFramers() {
		t.Run(hf.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, w := floodServer(t, hf.f(), hf.buf)
			m := newHoldMsgsLead(t, holdMsgCount, holdLead, hf.lines)
			werr := writeChunked(w, m.wire(0, holdMsgCount))
			waitHeld(ctx, t, s)
			require.NoError(t, w.(*net.TCPConn).SetLinger(0))
			require.NoError(t, w.Close())
			<-werr // the writer stops on the closed conn
			i := 0
			for ; ; i++ {
				msg, err := s.Receive(ctx)
				if err != nil {
					require.NotErrorIs(t, err, context.DeadlineExceeded, "receive hangs after the RST")
					var re *ReceiveError
					require.ErrorAs(t, err, &re)
					break
				}
				require.Less(t, i, holdMsgCount)
				// whole, for the lines framer too: a reset is no end of
				// stream, after which the bytes after the last separator
				// would be a final line (framers.Delimiter)
				require.True(t, msg.EndOfMessage, "message %d", i)
				m.check(t, i, msg.Data)
			}
			select {
			case <-s.Done():
			case <-ctx.Done():
				require.FailNow(t, "Done never closed after the RST")
			}
			var ce *ConnectionError
			require.ErrorAs(t, s.Err(), &ce)
			require.ErrorIs(t, s.Err(), syscall.ECONNRESET)
			t.Logf("%d messages before the reset: %v", i, s.Err())
		})
	}
}

// The application's Close or Abort while the framer holds returns
// promptly and ends the connection; the raw peer sees the end.
func TestHoldHuntCloseOrAbortWhileHolding(t *testing.T) {
	for _, hf := range holdFramers() {
		for _, how := range []string{"close", "abort", "close-receiving", "abort-receiving"} {
			t.Run(hf.name+"/"+how, func(t *testing.T) {
				ctx := testCtx(t)
				s, w := floodServer(t, hf.f(), hf.buf)
				m := newHoldMsgsLead(t, holdMsgCount, holdLead, hf.lines)
				werr := writeChunked(w, m.wire(0, holdMsgCount))
				receiving := how == "close-receiving" || how == "abort-receiving"
				recvDone := make(chan error, 1)
				waitHeld(ctx, t, s)
				if receiving {
					// a receiver takes a few messages, the rest held, then
					// waits in Receive while the close comes
					for i := range 20 {
						msg, err := s.Receive(ctx)
						require.NoError(t, err)
						m.check(t, i, msg.Data)
					}
					go func() {
						for {
							if _, err := s.Receive(ctx); err != nil {
								recvDone <- err
								return
							}
						}
					}()
				}
				// the peer reads until our end comes, then closes
				peerDone := make(chan error, 1)
				go func() {
					_, err := io.Copy(io.Discard, w)
					_ = w.Close()
					peerDone <- err
				}()
				start := time.Now()
				if how == "close" || how == "close-receiving" {
					require.NoError(t, s.Close())
				} else {
					s.Abort()
				}
				select {
				case <-s.Done():
				case <-ctx.Done():
					require.FailNow(t, "Done never closed", "%s while holding", how)
				}
				took := time.Since(start)
				t.Logf("%s took %v", how, took)
				// the held bytes are parsed through (and dropped): the
				// reader reaches the peer's end well before the 5 s linger
				require.Less(t, took, 2*time.Second, "%s waited for the linger timeout", how)
				if err := s.Err(); err != nil && how != "abort" && how != "abort-receiving" {
					// the peer closes once it sees our end, cutting what
					// it was writing: a truncated message is the peer's
					var ce *ConnectionError
					require.ErrorAs(t, err, &ce)
					require.ErrorIs(t, err, framers.ErrTruncated)
				}
				if receiving {
					select {
					case err := <-recvDone:
						require.NotErrorIs(t, err, context.DeadlineExceeded)
					case <-ctx.Done():
						require.FailNow(t, "Receive never returned after the close")
					}
				}
				select {
				case <-peerDone:
				case <-ctx.Done():
					require.FailNow(t, "the peer never saw the end")
				}
				select {
				case <-werr:
				case <-ctx.Done():
					require.FailNow(t, "the writer never ended")
				}
			})
		}
	}
}
