package taps

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// One read is parsed against the receive credit: a read of up to 256 KiB
// of tiny messages (64k empty length-prefixed ones, 256k empty lines)
// used to be parsed whole whatever the credit left, so that a small
// receive buffer held many times its size. With a 256 KiB buffer the
// heap held for an application that does not receive stays within twice
// the buffer plus 512 KiB (the bytes read but not parsed), whatever the
// messages' size.

const smallRecvBuf = 256 << 10

// floodCase is a framer and a flood of its tiny messages (about 64 KiB,
// repeated), each message's expected body.
type floodCase struct {
	name   string
	framer func() framers.Framer
	frames []byte
	body   []byte
}

func smallMessageFloods() []floodCase {
	lines := func(msg string) []byte { return bytes.Repeat([]byte(msg), (64<<10)/len(msg)) }
	return []floodCase{
		{"length-prefix-empty", func() framers.Framer { return framers.NewLengthPrefix() }, tinyFrames(0), []byte{}},
		{"length-prefix-one-byte", func() framers.Framer { return framers.NewLengthPrefix() }, tinyFrames(1), []byte("x")},
		{"lines-one-byte", func() framers.Framer { return framers.NewLines() }, lines("x\n"), []byte("x")},
		{"lines-empty", func() framers.Framer { return framers.NewLines() }, lines("\n"), []byte{}},
		{"delimiter-one-byte", func() framers.Framer { return framers.NewDelimiter([]byte("\r\n")) }, lines("y\r\n"), []byte("y")},
	}
}

// floodServer listens with a small receive buffer and framer f, and
// returns the accepted connection and its raw peer.
func floodServer(t *testing.T, f framers.Framer, recvBuf int) (*Connection, net.Conn) {
	t.Helper()
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pre := NewPreconnection(WithSystem(sys), WithReceiveBuffer(recvBuf),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(f)
	ln, err := pre.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	w, err := net.Dial("tcp", listenerAddr(t, ln).String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { s.Abort(); <-s.Done() })
	require.NoError(t, w.(*net.TCPConn).SetWriteBuffer(64<<10))
	return s, w
}

func TestTinyMessageFloodSmallBufferHeldMemoryBounded(t *testing.T) {
	const bound = 2*smallRecvBuf + 512<<10
	for _, fc := range smallMessageFloods() {
		t.Run(fc.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, w := floodServer(t, fc.framer(), smallRecvBuf)
			base := heapInUse()
			over := func() bool { return heapNow()-base > bound && heapInUse()-base > bound }
			// the application never receives: the reader stops, and the
			// writes stall in the kernel's buffers
			sent, stalled := floodUntil(t, w, fc.frames, 256<<20, over)
			held := heapInUse() - base
			t.Logf("sent %d bytes, stalled %v, %d bytes queued, heap held %d bytes (%.1fx the %d-byte buffer)",
				sent, stalled, s.link.BufferedForTest(), held, float64(held)/smallRecvBuf, smallRecvBuf)
			require.True(t, stalled, "the sender was never held back (heap held %d bytes)", held)
			require.LessOrEqual(t, held, int64(bound), "receive side holds %d bytes for a %d-byte buffer", held, smallRecvBuf)

			// receiving resumes the flow (the held bytes are parsed on):
			// the messages are all there, each whole, past several
			// buffers' worth
			require.NoError(t, w.SetWriteDeadline(time.Time{}))
			for range 4 * smallRecvBuf / 256 {
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				require.Equal(t, fc.body, m.Data)
			}
		})
	}
}

// A flood of tiny messages followed by the peer's end of stream, with the
// application receiving only once the sender is done: every message
// arrives, in order, then the end of stream (which waited behind the
// bytes held for want of credit).
func TestTinyMessageFloodThenEndOfStreamAllDelivered(t *testing.T) {
	for _, framer := range []string{"length-prefix", "lines"} {
		t.Run(framer, func(t *testing.T) {
			ctx := testCtx(t)
			var (
				out  []byte
				f    framers.Framer
				body = func(i int) []byte { return []byte{byte('a' + i%26)} }
				n    = 20_000
			)
			if framer == "lines" {
				f, n = framers.NewLines(), 50_000
				for i := range n {
					out = append(append(out, body(i)...), '\n')
				}
			} else {
				f = framers.NewLengthPrefix()
				for i := range n {
					out = append(binary.BigEndian.AppendUint32(out, 1), body(i)...)
				}
			}
			s, w := floodServer(t, f, 4<<10)
			require.NoError(t, w.(*net.TCPConn).SetWriteBuffer(1<<20)) // the whole flood fits in the kernel's buffers
			werr := make(chan error, 1)
			go func() {
				_, err := w.Write(out)
				if err == nil {
					err = w.(*net.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			// the end of stream is sent before anything is received: it
			// reaches the receiver while most of the flood waits for credit
			require.NoError(t, <-werr)
			for i := range n {
				m, err := s.Receive(ctx)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, body(i), m.Data, "message %d", i)
			}
			_, err := s.Receive(ctx)
			require.ErrorIs(t, err, ErrClosed)
		})
	}
}
