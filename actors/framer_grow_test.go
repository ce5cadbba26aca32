package actors

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// progressFramer is a length-prefix framer that reports how many bytes its
// Instance holds after each input, so a test can wait until the receiver
// has taken what the peer sent. It is not a Cloner: one value, one
// connection.
type progressFramer struct {
	lp       *framers.LengthPrefix
	mu       sync.Mutex
	buffered int
	changed  chan struct{} // coalescing: one pending wake-up at most
}

func newProgressFramer() *progressFramer {
	return &progressFramer{lp: framers.NewLengthPrefix(), changed: make(chan struct{}, 1)}
}

func (p *progressFramer) Start(inst *framers.Instance) { p.lp.Start(inst) }
func (p *progressFramer) Stop(inst *framers.Instance)  { p.lp.Stop(inst) }
func (p *progressFramer) MaxBuffered() int             { return p.lp.MaxBuffered() }

func (p *progressFramer) NewSentMessage(inst *framers.Instance, data []byte, meta framers.Metadata, eom bool) {
	p.lp.NewSentMessage(inst, data, meta, eom)
}

func (p *progressFramer) HandleReceivedData(inst *framers.Instance) {
	p.lp.HandleReceivedData(inst)
	p.mu.Lock()
	p.buffered = inst.Buffered()
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// waitBuffered waits until the Instance holds n bytes.
func (p *progressFramer) waitBuffered(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for {
		p.mu.Lock()
		got := p.buffered
		p.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-p.changed:
		case <-ctx.Done():
			t.Fatalf("the receiver holds %d bytes, want %d", got, n)
		}
	}
}

// initiateFramed starts a real TCP connection to peer with framer f and
// waits for Ready; it returns the Link and the peer's side.
func initiateFramed(t *testing.T, ctx context.Context, sys *System, peer *tcpPeer, f framers.Framer) (*Link, net.Conn) {
	t.Helper()
	cfg := &messages.ConnectionConfig{Remotes: endpoints(peer.addr), Stacks: []stacks.Stack{stacks.TCP()},
		Framers: []framers.Framer{f}}
	link := NewLink(sys.NewID(), 0, 0, false)
	_, err := Ask(ctx, sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())
	return link, peer.accept(t, ctx)
}

// framed returns a length-prefix frame of body.
func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// A peer that announces the largest message and sends a few bytes of it
// makes the receiver allocate in proportion to those bytes, not to the
// announced size.
func TestFramedClaimAllocatesWithTheBytes(t *testing.T) {
	var total, peak atomic.Int64
	hook := func(n int) {
		total.Add(int64(n))
		for p := peak.Load(); int64(n) > p && !peak.CompareAndSwap(p, int64(n)); p = peak.Load() {
		}
	}
	testHookFramerAlloc.Store(&hook)
	defer testHookFramerAlloc.Store(nil)
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := newTCPPeer(t)
	for _, body := range []int{100, 20 << 10, 300 << 10, 1 << 20} {
		total.Store(0)
		peak.Store(0)
		pf := newProgressFramer()
		link, c := initiateFramed(t, ctx, sys, peer, pf)
		results := make(chan RecvResult, 1)
		link.ReceiveAsync(-1, -1, func(r RecvResult) { results <- r })
		wire := binary.BigEndian.AppendUint32(nil, framers.DefaultMaxMessageSize-1)
		wire = append(wire, bytes.Repeat([]byte{0x5A}, body)...)
		_, err := c.Write(wire)
		require.NoError(t, err)
		pf.waitBuffered(t, ctx, len(wire)) // the peer stalls here
		received := int64(len(wire))
		require.LessOrEqual(t, peak.Load(), 2*received+256<<10,
			"body %d: the largest receive buffer follows the bytes received, not the %d announced", body, framers.DefaultMaxMessageSize-1)
		require.LessOrEqual(t, total.Load(), 4*received+256<<10,
			"body %d: all receive buffers together follow the bytes received", body)
		require.NoError(t, c.Close())
		select {
		case r := <-results:
			require.ErrorIs(t, r.Err, framers.ErrTruncated, "body %d", body)
		case <-ctx.Done():
			t.Fatalf("body %d: no receive error after the peer closed", body)
		}
		<-link.Done()
	}
}

// Large messages sent whole arrive whole, in one piece, in the buffer they
// were read into (handed to the application as Backing); a 1 MiB buffer
// handed back receives the next 1 MiB message in place.
func TestFramedLargeMessageArrivesWhole(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer := newTCPPeer(t)
	for _, size := range []int{1 << 20, framers.DefaultMaxMessageSize - 1} {
		link, c := initiateFramed(t, ctx, sys, peer, framers.NewLengthPrefix())
		var prev []byte
		for round := range 2 {
			body := make([]byte, size)
			for k := range body {
				body[k] = byte(k*31 + k>>10 + round)
			}
			errc := make(chan error, 1)
			go func() { _, err := c.Write(framed(body)); errc <- err }()
			r, err := link.Receive(ctx, -1, -1)
			require.NoError(t, err)
			require.NoError(t, r.Err)
			require.NoError(t, <-errc)
			require.True(t, r.EndOfMessage, "size %d: one piece", size)
			require.Len(t, r.Data, size)
			require.True(t, bytes.Equal(body, r.Data), "size %d round %d: intact", size, round)
			require.NotNil(t, r.Backing, "size %d: received into a buffer of its own", size)
			require.Same(t, &r.Backing[len(r.Backing)-1], &r.Data[len(r.Data)-1])
			if prev != nil && size <= DefaultRecvBufferLimit {
				require.Same(t, &prev[0], &r.Backing[0], "size %d: the handed-back buffer took the next message", size)
			}
			prev = r.Backing
			link.RecycleRecv(r.Backing)
		}
		require.NoError(t, c.Close())
	}
}

// A growing message starts in the handed-back buffer that holds it whole
// (the smallest such), else in the largest; smaller ones stay kept.
func TestRecvAllocForPicksTheBestFit(t *testing.T) {
	l := NewLink(1, 64<<20, 4<<20, false) // a budget of 16 MiB: all are kept
	small, mid, big, huge := make([]byte, 64<<10), make([]byte, 512<<10), make([]byte, 1<<20), make([]byte, 2<<20)
	for _, b := range [][]byte{small, huge, mid, big} {
		l.RecycleRecv(b)
	}
	require.Same(t, &big[0], &l.recvAllocFor(64<<10, 1<<20)[0], "the smallest that holds the message")
	require.Same(t, &huge[0], &l.recvAllocFor(64<<10, 3<<20)[0], "none holds it: the largest")
	require.Same(t, &mid[0], &l.recvAllocFor(128<<10, 3<<20)[0])
	b := l.recvAllocFor(128<<10, 3<<20)
	require.NotSame(t, &small[0], &b[0], "too small: left for later")
	require.Same(t, &small[0], &l.recvAllocFor(64<<10, 64<<10)[0])
	require.Zero(t, l.recvFree.bytes.Load())
}

// Once the slots or the budget are full, a larger buffer takes the place
// of the smallest kept: the buffers a growing message outgrew give way to
// whole messages' ones.
func TestRecycleRecvLargerReplacesSmallest(t *testing.T) {
	l := NewLink(1, 4<<20, 4<<20, false)
	var kept [][]byte
	for _, n := range []int{64 << 10, 128 << 10, 256 << 10, 512 << 10} {
		kept = append(kept, make([]byte, n))
		l.RecycleRecv(kept[len(kept)-1])
	}
	whole := make([]byte, 1<<20+4)
	l.RecycleRecv(whole) // 960 KiB kept: beyond the budget of 1 MiB
	tiny := make([]byte, 8<<10)
	l.RecycleRecv(tiny) // smaller than all kept: dropped
	require.Same(t, &kept[1][0], &l.recvAllocFor(8<<10, 8<<10)[0], "the smallest kept is 128 KiB")
	require.Same(t, &whole[0], &l.recvAllocFor(64<<10, 1<<20+4)[0], "kept in place of the smallest")
	for range 2 {
		b := l.recvAllocFor(64<<10, 64<<10)
		require.False(t, &b[0] == &kept[0][0] || &b[0] == &tiny[0], "the smallest gave way")
	}
}
