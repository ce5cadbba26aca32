package taps

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// Memory amplification by many tiny messages: the receive buffer bounds
// what an application that does not receive holds, and every queued
// message costs more than its bytes (its queue entry, its metadata), so a
// message is charged that cost too (actors.recvItemCost). A peer that
// sends hundreds of thousands of empty or one-byte messages must not make
// the receiving side hold more than a small multiple of the buffer.

// amplifyLimit is the receive buffer of these tests; amplifyBound the
// heap growth they allow for one connection that received a flood
// (the buffer, the bytes read but not yet parsed, and some slack).
const (
	amplifyLimit = 2 << 20
	amplifyBound = 4 * amplifyLimit
)

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// heapNow returns the heap including garbage: an upper bound of the live
// heap, without a collection.
func heapNow() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// floodUntil writes w (repeatedly) until the peer stops taking bytes (a
// write makes no progress over three write deadlines in a row) or over
// returns true (checked every MiB). It returns the bytes written and
// whether the writes stalled.
func floodUntil(t *testing.T, w net.Conn, frames []byte, max int64, over func() bool) (int64, bool) {
	t.Helper()
	var sent, checked int64
	stalls := 0
	for sent < max {
		require.NoError(t, w.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
		n, err := w.Write(frames)
		sent += int64(n)
		if err != nil {
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			if n == 0 {
				if stalls++; stalls == 3 {
					return sent, true
				}
				continue
			}
		}
		stalls = 0
		if sent-checked >= 1<<20 {
			checked = sent
			if over() {
				return sent, false
			}
		}
	}
	return sent, false
}

// tinyFrames returns length-prefixed messages of body bytes each, about
// 64 KiB of them.
func tinyFrames(body int) []byte {
	per := framers.LengthPrefixHeaderLen + body
	out := make([]byte, 0, 64<<10)
	for len(out)+per <= cap(out) {
		out = binary.BigEndian.AppendUint32(out, uint32(body))
		for range body {
			out = append(out, 'x')
		}
	}
	return out
}

func TestTinyMessageFloodTCPHeldMemoryBounded(t *testing.T) {
	for _, body := range []int{0, 1} {
		t.Run(map[int]string{0: "empty", 1: "one-byte"}[body], func(t *testing.T) {
			ctx := testCtx(t)
			w, s := framedRawPeer(t, amplifyLimit, framers.NewLengthPrefix())
			require.NoError(t, w.(*net.TCPConn).SetWriteBuffer(64<<10))

			base := heapInUse()
			over := func() bool {
				return heapNow()-base > amplifyBound && heapInUse()-base > amplifyBound
			}
			// the application never receives: the reader must stop
			// reading, and the writes stall (in the kernel's buffers)
			sent, stalled := floodUntil(t, w, tinyFrames(body), 256<<20, over)
			held := heapInUse() - base
			queued := s.link.BufferedForTest()
			t.Logf("%d-byte messages: sent %d bytes (%d messages), stalled %v, %d bytes queued, heap held %d bytes (%.1fx the %d-byte buffer)",
				body, sent, sent/int64(framers.LengthPrefixHeaderLen+body), stalled, queued, held, float64(held)/amplifyLimit, amplifyLimit)
			require.True(t, stalled, "the sender was never held back (heap held %d bytes)", held)
			require.LessOrEqual(t, held, int64(amplifyBound), "receive side holds %d bytes for a %d-byte buffer", held, amplifyLimit)

			// receiving resumes the flow: the messages are all there, in
			// order, each whole
			require.NoError(t, w.SetWriteDeadline(time.Time{}))
			for range 1000 {
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				require.Len(t, m.Data, body)
			}
		})
	}
}

// A message larger than the whole receive buffer still gets through
// (alone), with many tiny ones queued before it.
func TestTinyMessagesThenOneLargerThanTheBuffer(t *testing.T) {
	ctx := testCtx(t)
	w, s := framedRawPeer(t, 64<<10, framers.NewLengthPrefix())

	const tiny, big = 5000, 1 << 20
	var out []byte
	for range tiny {
		out = binary.BigEndian.AppendUint32(out, 1)
		out = append(out, 't')
	}
	out = binary.BigEndian.AppendUint32(out, big)
	out = append(out, make([]byte, big)...)
	werr := make(chan error, 1)
	go func() { _, err := w.Write(out); werr <- err }()
	for range tiny {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, []byte("t"), m.Data)
	}
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Len(t, m.Data, big)
	require.NoError(t, <-werr)
}

// framedRawPeer is a Connection a Listener on 127.0.0.1 (in a System of
// its own, with receive buffer recvBuf and framers fs) accepted from w, a
// raw TCP peer; both end with the test.
func framedRawPeer(t *testing.T, recvBuf int, fs ...framers.Framer) (net.Conn, *Connection) {
	t.Helper()
	ctx := testCtx(t)
	pre := NewPreconnection(WithSystem(newTestSystem(t)), WithReceiveBuffer(recvBuf),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	ln, err := pre.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	w, err := net.Dial("tcp", listenerAddr(t, ln).String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { s.Abort(); <-s.Done() })
	return w, s
}

// floodDatagrams sends empty datagrams from pc to to, a thousand at a
// time, until c's reader waits for its application (the receive buffer
// is charged full), at most max of them. It returns how many it sent and
// whether the reader came to wait.
func floodDatagrams(t *testing.T, c *Connection, pc *net.UDPConn, to netip.AddrPort, max int) (int, bool) {
	t.Helper()
	sent := 0
	for sent < max {
		for range 1000 {
			_, err := pc.WriteToUDPAddrPort(nil, to)
			require.NoError(t, err)
			sent++
		}
		if _, _, full := c.link.RecvCreditForTest(); full {
			return sent, true
		}
	}
	return sent, false
}

func TestEmptyDatagramFloodUDPHeldMemoryBounded(t *testing.T) {
	for _, accepted := range []bool{true, false} {
		t.Run(map[bool]string{true: "accepted", false: "initiated"}[accepted], func(t *testing.T) {
			sys := newTestSystem(t)
			ctx := testCtx(t)
			pc := rawUDP(t)
			var c *Connection
			var to netip.AddrPort
			if accepted {
				ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)), WithReceiveBuffer(amplifyLimit),
					WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
				require.NoError(t, err)
				t.Cleanup(ln.Stop)
				to = listenerAddr(t, ln)
				_, err = pc.WriteToUDPAddrPort(nil, to)
				require.NoError(t, err)
				c, err = ln.Accept(ctx)
				require.NoError(t, err)
			} else {
				var err error
				c, err = NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)), WithReceiveBuffer(amplifyLimit),
					WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(ctx)
				require.NoError(t, err)
				require.NoError(t, c.Send(ctx, []byte("hello"), nil))
				_, to = readDatagramFrom(t, pc)
			}
			defer func() { c.Abort(); <-c.Done() }()

			base := heapInUse()
			sent, full := floodDatagrams(t, c, pc, to, 300_000)
			held := heapInUse() - base
			items, charged, _ := c.link.RecvCreditForTest()
			t.Logf("sent %d empty datagrams, reader waits %v, %d queued (charged %d), heap held %d bytes (%.1fx the %d-byte buffer)",
				sent, full, items, charged, held, float64(held)/amplifyLimit, amplifyLimit)
			require.True(t, full, "the reader never waited for the application (%d datagrams queued, heap held %d bytes)", items, held)
			require.LessOrEqual(t, held, int64(amplifyBound))
			for range 100 {
				m, err := c.Receive(ctx)
				require.NoError(t, err)
				require.Empty(t, m.Data)
			}
		})
	}
}

// Under stacked framers the top framer's deliveries are the application's
// too: one large message of the lower framer that holds only empty
// messages of the upper one (1 MiB of zeros: 256k of them) must not make
// the receiving side hold far more than its receive buffer, and the
// messages are all there once the application receives.
func TestTinyMessagesInOneLargeMessageStackedFramersHeldMemoryBounded(t *testing.T) {
	ctx := testCtx(t)
	w, s := framedRawPeer(t, amplifyLimit, framers.NewLengthPrefix(), framers.NewLengthPrefix())

	const body = 1 << 20 // of the lower framer: body/4 empty messages of the upper one
	frames := binary.BigEndian.AppendUint32(nil, body)
	frames = append(frames, make([]byte, body)...)
	base := heapInUse()
	over := func() bool {
		return heapNow()-base > amplifyBound && heapInUse()-base > amplifyBound
	}
	// the application never receives: the reader must stop reading, and
	// the writes stall (in the kernel's buffers)
	sent, stalled := floodUntil(t, w, frames, 64<<20, over)
	held := heapInUse() - base
	items, charged, _ := s.link.RecvCreditForTest()
	t.Logf("sent %d bytes (%d empty messages), stalled %v, %d queued (charged %d), heap held %d bytes (%.1fx the %d-byte buffer)",
		sent, sent/4, stalled, items, charged, held, float64(held)/amplifyLimit, amplifyLimit)
	require.True(t, stalled, "the sender was never held back (heap held %d bytes)", held)
	require.LessOrEqual(t, held, int64(amplifyBound), "receive side holds %d bytes for a %d-byte buffer", held, amplifyLimit)

	// receiving resumes the flow: the messages are all there, each empty
	require.NoError(t, w.SetWriteDeadline(time.Time{}))
	for range body/4 + 1000 {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Empty(t, m.Data)
	}
}

// The messages the top of stacked framers holds for want of credit come
// before the end of the stream that arrived meanwhile: all of them, then
// the peer's clean end (nothing more to receive) or its reset (a
// ConnectionError).
func TestStackedFramersHeldMessagesComeBeforeTheEnd(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(map[bool]string{false: "fin", true: "reset"}[reset], func(t *testing.T) {
			ctx := testCtx(t)
			w, s := framedRawPeer(t, 64<<10, framers.NewLengthPrefix(), framers.NewLengthPrefix())

			const body = 256 << 10 // 64k empty messages of the upper framer, 4 MiB of credit
			frames := binary.BigEndian.AppendUint32(nil, body)
			frames = append(frames, make([]byte, body)...)
			_, err := w.Write(frames)
			require.NoError(t, err)
			m, err := s.Receive(ctx)
			require.NoError(t, err)
			require.Empty(t, m.Data)
			if reset {
				require.NoError(t, w.(*net.TCPConn).SetLinger(0))
			}
			require.NoError(t, w.Close())
			n := 1
			for ; ; n++ {
				m, err = s.Receive(ctx)
				if err != nil {
					break
				}
				require.Empty(t, m.Data)
			}
			require.Equal(t, body/4, n, "messages received before the end (%v)", err)
			if reset {
				awaitDone(t, s, "the connection")
				var ce *ConnectionError
				require.ErrorAs(t, s.Err(), &ce)
				require.ErrorIs(t, s.Err(), syscall.ECONNRESET)
			} else {
				require.ErrorIs(t, err, net.ErrClosed) // nothing more comes
				require.NoError(t, s.Err())
			}
		})
	}
}

// The metadata a framer attaches to a received message costs the receiver
// as its bytes do: a fixed header framer copies every message's header
// into its metadata, so a peer sending empty messages behind large
// headers (4 KiB of zeros each) must not make the receiving side hold far
// more than its receive buffer.
func TestLargeHeaderMetadataFloodHeldMemoryBounded(t *testing.T) {
	const header = 4 << 10
	fh, err := framers.NewFixedHeader(header, 0, 4)
	require.NoError(t, err)
	ctx := testCtx(t)
	w, s := framedRawPeer(t, amplifyLimit, fh)
	require.NoError(t, w.(*net.TCPConn).SetWriteBuffer(64<<10))

	base := heapInUse()
	over := func() bool {
		return heapNow()-base > amplifyBound && heapInUse()-base > amplifyBound
	}
	// the application never receives: the reader must stop reading, and
	// the writes stall (in the kernel's buffers)
	sent, stalled := floodUntil(t, w, make([]byte, 64<<10), 256<<20, over)
	held := heapInUse() - base
	items, charged, _ := s.link.RecvCreditForTest()
	t.Logf("sent %d bytes (%d messages), stalled %v, %d queued (charged %d), heap held %d bytes (%.1fx the %d-byte buffer)",
		sent, sent/header, stalled, items, charged, held, float64(held)/amplifyLimit, amplifyLimit)
	require.True(t, stalled, "the sender was never held back (heap held %d bytes)", held)
	require.LessOrEqual(t, held, int64(amplifyBound), "receive side holds %d bytes for a %d-byte buffer", held, amplifyLimit)

	// receiving resumes the flow: the messages are all there, each with
	// its header
	require.NoError(t, w.SetWriteDeadline(time.Time{}))
	for range sent / header {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Empty(t, m.Data)
		require.Len(t, m.Context.FramerMetadata(fh)[framers.HeaderMetadataKey], header)
	}
}

// paddingFramer is a user framer of type-length-value records: a 1-byte
// type, a 4-byte big-endian length and the value; records of type 0 are
// padding, skipped (AdvanceReceiveCursor), the others delivered.
func paddingFramer() *hookFramer {
	h := newHookFramer()
	h.recv = func(inst *framers.Instance) {
		for !inst.Failed() {
			hdr, ok := inst.Parse(5, 5)
			if !ok {
				return
			}
			typ, n := hdr[0], int(binary.BigEndian.Uint32(hdr[1:]))
			if _, ok := inst.Parse(5+n, 0); !ok {
				return
			}
			inst.AdvanceReceiveCursor(5)
			if typ == 0 {
				inst.AdvanceReceiveCursor(n)
				continue
			}
			inst.DeliverAndAdvanceReceiveCursor(nil, n, true)
		}
	}
	return h
}

// A tiny message cut from a read buffer keeps the whole buffer alive: the
// bytes a framer skips before it (padding, headers) cost the receiver as
// its own do. A peer sending one-byte messages, each behind 60 KiB of
// padding the framer skips, must not make the receiving side hold far
// more than its receive buffer.
func TestPaddedTinyMessageFloodHeldMemoryBounded(t *testing.T) {
	ctx := testCtx(t)
	w, s := framedRawPeer(t, amplifyLimit, paddingFramer())
	require.NoError(t, w.(*net.TCPConn).SetWriteBuffer(64<<10))

	const pad = 60 << 10
	unit := []byte{1, 0, 0, 0, 1, 'x', 0}
	unit = binary.BigEndian.AppendUint32(unit, pad)
	unit = append(unit, make([]byte, pad)...)
	base := heapInUse()
	over := func() bool {
		return heapNow()-base > amplifyBound && heapInUse()-base > amplifyBound
	}
	// the application never receives: the reader must stop reading, and
	// the writes stall (in the kernel's buffers)
	sent, stalled := floodUntil(t, w, unit, 1<<30, over)
	held := heapInUse() - base
	items, charged, _ := s.link.RecvCreditForTest()
	t.Logf("sent %d bytes (%d messages), stalled %v, %d queued (charged %d), heap held %d bytes (%.1fx the %d-byte buffer)",
		sent, sent/int64(len(unit)), stalled, items, charged, held, float64(held)/amplifyLimit, amplifyLimit)
	require.True(t, stalled, "the sender was never held back (heap held %d bytes)", held)
	require.LessOrEqual(t, held, int64(amplifyBound), "receive side holds %d bytes for a %d-byte buffer", held, amplifyLimit)

	// receiving resumes the flow: the messages are all there
	require.NoError(t, w.SetWriteDeadline(time.Time{}))
	for range sent / int64(len(unit)) {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, "x", string(m.Data))
	}
}
