package actors

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// A write that fails partway through a batch has handed its first bytes to
// the transport: every message whose bytes (framer header included) lie
// within them was passed to the transport and gets Sent; the message the
// failure cut and those after it get SendError (RFC 9622 §9.2.2), and the
// byte stream fails. The transports below script what a write takes and
// when it fails, so the cut is known exactly.

// partialScript is what the scripted transport's writes do.
type partialScript struct {
	try     int   // TryWriteBuffers (tryT only): bytes it takes
	tryErr  error // and then fails with this (else: blocked for the rest)
	n       int   // WriteBuffers: bytes it takes before it fails
	err     error
	mu      sync.Mutex
	offered []int // bytes offered to each WriteBuffers call
}

// scriptT is a pipe whose vectored write takes script.n bytes and fails.
type scriptT struct {
	*pipeTransport
	s *partialScript
}

func (p *scriptT) WriteBuffers(b *net.Buffers) (int64, error) {
	p.s.mu.Lock()
	p.s.offered = append(p.s.offered, buffersLen(*b))
	p.s.mu.Unlock()
	n := min(p.s.n, buffersLen(*b))
	stacks.ConsumeBuffers(b, n)
	return int64(n), p.s.err
}

// tryT also writes without blocking (stacks' quicStream shape): it takes
// script.try bytes at once, then reports blocked (the rest goes to a writer
// goroutine: a short write, then the error on the retry) or fails.
type tryT struct{ scriptT }

func (p *tryT) TryWriteBuffers(b *net.Buffers) (bool, error) {
	stacks.ConsumeBuffers(b, min(p.s.try, buffersLen(*b)))
	if p.s.tryErr != nil {
		return false, p.s.tryErr
	}
	return len(*b) > 0, nil
}

type scriptStack struct {
	*fakeStack
	wrap func(*pipeTransport) stacks.Transport
}

func (s *scriptStack) Dial(ctx context.Context, remote netip.AddrPort, opts stacks.Options) (stacks.Transport, error) {
	t, err := s.fakeStack.Dial(ctx, remote, opts)
	if err != nil {
		return nil, err
	}
	return s.wrap(t.(*pipeTransport)), nil
}

type partialCase struct {
	name   string
	framed bool  // LengthPrefix: a 4-byte header before each message
	tryW   bool  // the transport writes without blocking first (tryT)
	sizes  []int // message sizes
	s      *partialScript
	offer  int   // bytes the writer goroutine's WriteBuffers is offered (-1: not called)
	sent   []int // the messages that get Sent; the others get SendError
}

func TestPartialWriteSentForWrittenMessages(t *testing.T) {
	reset := syscall.ECONNRESET
	five := []int{1000, 1000, 1000, 1000, 1000}
	const hdr = framers.LengthPrefixHeaderLen
	cases := []partialCase{
		// (1) one vectored write returns (n>0, err)
		{name: "writev n and err", sizes: five, s: &partialScript{n: 2500, err: reset}, offer: 5000, sent: []int{0, 1}},
		{name: "writev n and err at a boundary", sizes: five, s: &partialScript{n: 2000, err: reset}, offer: 5000, sent: []int{0, 1}},
		{name: "writev nothing and err", sizes: five, s: &partialScript{n: 0, err: reset}, offer: 5000, sent: nil},
		{name: "writev all but one byte", sizes: five, s: &partialScript{n: 4999, err: reset}, offer: 5000, sent: []int{0, 1, 2, 3}},
		{name: "small batch in one buffer", sizes: []int{100, 100, 100, 100, 100}, s: &partialScript{n: 250, err: reset}, offer: 500, sent: []int{0, 1}},
		// (2) a short write, then an error on the retry
		{name: "short write then err", tryW: true, sizes: five, s: &partialScript{try: 1500, n: 1600, err: reset}, offer: 3500, sent: []int{0, 1, 2}},
		{name: "short write then nothing", tryW: true, sizes: five, s: &partialScript{try: 1500, n: 0, err: reset}, offer: 3500, sent: []int{0}},
		{name: "short write and err at once", tryW: true, sizes: five, s: &partialScript{try: 2000, tryErr: reset}, offer: -1, sent: []int{0, 1}},
		// (3) framers: the headers are bytes of the batch too
		{name: "framed writev at a boundary", framed: true, sizes: five, s: &partialScript{n: 2 * (hdr + 1000), err: reset}, offer: 5 * (hdr + 1000), sent: []int{0, 1}},
		{name: "framed writev one byte short", framed: true, sizes: five, s: &partialScript{n: 2*(hdr+1000) - 1, err: reset}, offer: 5 * (hdr + 1000), sent: []int{0}},
		{name: "framed short write then err", framed: true, tryW: true, sizes: five, s: &partialScript{try: hdr + 500, n: 2*(hdr+1000) + 1 - (hdr + 500), err: reset}, offer: 5*(hdr+1000) - (hdr + 500), sent: []int{0, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runPartialWrite(t, tc) })
	}
}

func runPartialWrite(t *testing.T, tc partialCase) {
	var tmu sync.Mutex
	traced := map[uint64][]string{}
	sys := NewSystem(Config{Tracer: func(r *messages.TraceRecord) {
		if r.Kind == "sent" || r.Kind == "send_error" {
			tmu.Lock()
			traced[r.MessageId] = append(traced[r.MessageId], r.Kind)
			tmu.Unlock()
		}
	}})
	defer shutdown(t, sys)
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	st := &scriptStack{fakeStack: newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}}),
		wrap: func(p *pipeTransport) stacks.Transport {
			if tc.tryW {
				return &tryT{scriptT{p, tc.s}}
			}
			return &scriptT{p, tc.s}
		}}
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{st}}
	if tc.framed {
		cfg.Framers = []framers.Framer{framers.NewLengthPrefix()}
	}
	conn, link := startScripted(t, sys, cfg)
	batch := &messages.SendBatch{}
	for i, size := range tc.sizes {
		id := sys.NewID()
		batch.Messages = append(batch.Messages, &messages.SendMessage{SendID: id, MessageID: id, Data: bytes.Repeat([]byte{byte('a' + i)}, size),
			EndOfMessage: true, Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1}})
	}
	out := expectOutcomes(t, link, batch)
	sys.AS.Root.Send(conn, batch) // one batch: one write
	<-link.Done()                 // the failed write failed the byte stream
	require.Error(t, link.Err(), "the connection failed")

	tc.s.mu.Lock()
	offered := append([]int(nil), tc.s.offered...)
	tc.s.mu.Unlock()
	if tc.offer < 0 {
		require.Empty(t, offered, "the failure came with the first write: no writer goroutine")
	} else {
		require.Equal(t, []int{tc.offer}, offered, "one batch, one write of what the first did not take")
	}
	sent := map[int]bool{}
	for _, i := range tc.sent {
		sent[i] = true
	}
	outcomes := out.taken(t)
	tmu.Lock()
	defer tmu.Unlock()
	for i := range tc.sizes {
		id := batch.Messages[i].SendID
		if sent[i] {
			require.NoError(t, outcomes[i], "message %d was written whole: Sent", i)
			require.Equal(t, []string{"sent"}, traced[id], "message %d traced", i)
		} else {
			require.ErrorIs(t, outcomes[i], syscall.ECONNRESET, "message %d was not written whole: SendError", i)
			require.Equal(t, []string{"send_error"}, traced[id], "message %d traced", i)
		}
	}
}

// startScripted initiates a connection with cfg (a scripted stack) and
// waits for its Ready.
func startScripted(t *testing.T, sys *System, cfg *messages.ConnectionConfig) (*actor.PID, *Link) {
	t.Helper()
	link := NewLink(sys.NewID(), 0, 0, false)
	res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())
	return res.(*ConnectionStarted).Conn, link
}

// sendOutcomes records the outcomes (Sent: nil, or the SendError) of a
// batch's messages, expected on the Link before the batch is sent.
type sendOutcomes struct {
	mu   sync.Mutex
	errs [][]error
}

func expectOutcomes(t *testing.T, link *Link, batch *messages.SendBatch) *sendOutcomes {
	t.Helper()
	o := &sendOutcomes{errs: make([][]error, len(batch.Messages))}
	for i, m := range batch.Messages {
		require.True(t, link.ExpectSend(m.SendID, func(err error) {
			o.mu.Lock()
			o.errs[i] = append(o.errs[i], err)
			o.mu.Unlock()
		}))
	}
	return o
}

// taken requires exactly one outcome per message and returns them.
func (o *sendOutcomes) taken(t *testing.T) []error {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]error, len(o.errs))
	for i, errs := range o.errs {
		require.Len(t, errs, 1, "message %d: exactly one of Sent and SendError", i)
		out[i] = errs[0]
	}
	return out
}
