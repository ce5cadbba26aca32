package actors

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// A datagram write that fails partway through a batch (one writeDatagrams
// call, one datagram per message) fails the connection, but the datagrams
// written before the failing one went out whole: they get Sent, the
// failing one and those after it SendError (RFC 9622 §9.2.2). A datagram
// refused on its own (noFragmentation above the path MTU, or a framed
// message above the largest datagram) gets its own SendError and does not
// move the cut. The transport is the real UDP stack's, dialled to a
// loopback socket, wrapped so that its datagram writes follow a script.

// dgScript is what the scripted datagram writes do: call n (1-based,
// counting Write, WriteMsg and WriteNoFrag) fails with fail[n] instead of
// being sent.
type dgScript struct {
	fail  map[int]error
	mu    sync.Mutex
	calls int
	sent  int // calls passed to the UDP transport
}

func (s *dgScript) next() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if err := s.fail[s.calls]; err != nil {
		return err
	}
	s.sent++
	return nil
}

// dgScriptT is the UDP transport with scripted writes; it keeps the
// datagram interfaces the connection looks for on it.
type dgScriptT struct {
	stacks.Transport
	s *dgScript
}

var (
	_ stacks.TOSDatagrams      = (*dgScriptT)(nil)
	_ stacks.NoFragDatagrams   = (*dgScriptT)(nil)
	_ stacks.SocketInfo        = (*dgScriptT)(nil)
	_ stacks.SoftErrorNotifier = (*dgScriptT)(nil)
)

func (t *dgScriptT) Write(b []byte) (int, error) {
	if err := t.s.next(); err != nil {
		return 0, err
	}
	return t.Transport.Write(b)
}

func (t *dgScriptT) WriteMsg(b []byte, tos uint8) (int, error) {
	if err := t.s.next(); err != nil {
		return 0, err
	}
	return t.Transport.(stacks.TOSDatagrams).WriteMsg(b, tos)
}

func (t *dgScriptT) ReadMsg(b []byte) (int, uint8, error) {
	return t.Transport.(stacks.TOSDatagrams).ReadMsg(b)
}

func (t *dgScriptT) WriteNoFrag(b []byte, tos uint8, hasTOS bool) (int, error) {
	if err := t.s.next(); err != nil {
		return 0, err
	}
	if nf, ok := t.Transport.(stacks.NoFragDatagrams); ok {
		return nf.WriteNoFrag(b, tos, hasTOS)
	}
	return 0, stacks.ErrNoFragUnsupported
}

func (t *dgScriptT) AllowFragmentation() error {
	if nf, ok := t.Transport.(stacks.NoFragDatagrams); ok {
		return nf.AllowFragmentation()
	}
	return nil
}

func (t *dgScriptT) Info() (stacks.TransportInfo, error) {
	return t.Transport.(stacks.SocketInfo).Info()
}

func (t *dgScriptT) SoftErrors() <-chan error {
	if n, ok := t.Transport.(stacks.SoftErrorNotifier); ok {
		return n.SoftErrors()
	}
	return nil
}

// dgScriptStack is the registered "udp" stack (the connection learns its
// capabilities by name) whose transports are scripted.
type dgScriptStack struct {
	stacks.Stack
	s *dgScript
}

func (st dgScriptStack) Dial(ctx context.Context, remote netip.AddrPort, opts stacks.Options) (stacks.Transport, error) {
	t, err := st.Stack.Dial(ctx, remote, opts)
	if err != nil {
		return nil, err
	}
	return &dgScriptT{Transport: t, s: st.s}, nil
}

type dgPartialCase struct {
	name    string
	framed  bool          // LengthPrefix: UDP with a framer, one datagram per framed message
	sizes   []int         // message sizes
	noFrag  map[int]bool  // messages sent with noFragmentation
	fail    map[int]error // the script: write call -> error
	calls   int           // datagram write calls made
	sent    []int         // messages Sent (and received by the peer, in order)
	refused map[int]error // messages refused one by one: their SendError
}

func TestDatagramPartialWriteSentBeforeFailing(t *testing.T) {
	eperm := syscall.EPERM
	cases := []dgPartialCase{
		{name: "third of four fails", sizes: []int{100, 200, 300, 400},
			fail: map[int]error{3: eperm}, calls: 3, sent: []int{0, 1}},
		{name: "first fails", sizes: []int{100, 200, 300, 400},
			fail: map[int]error{1: eperm}, calls: 1, sent: nil},
		{name: "last fails", sizes: []int{100, 200, 300, 400},
			fail: map[int]error{4: eperm}, calls: 4, sent: []int{0, 1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runDatagramPartialWrite(t, tc) })
	}
}

// A datagram refused on its own before the failing one gets its own
// SendError; the datagrams around it are reported as above.
func TestDatagramPartialWriteRefusedBeforeFailing(t *testing.T) {
	eperm := syscall.EPERM
	fragNeeded := &stacks.FragmentationError{Size: 100, MTU: 60, Err: syscall.EMSGSIZE}
	const max4 = 65507 // IPv4's largest UDP payload: the framed message below is 2 bytes over
	tooLarge := &framers.TooLargeError{Size: max4 + 2, Max: max4}
	cases := []dgPartialCase{
		{name: "noFragmentation refused before the failing one", sizes: []int{100, 200, 300, 400, 500},
			noFrag: map[int]bool{1: true}, fail: map[int]error{2: fragNeeded, 4: eperm}, calls: 4,
			sent: []int{0, 2}, refused: map[int]error{1: stacks.ErrFragmentationNeeded}},
		// the refused datagram is larger than those after the cut: its
		// bytes must still count where the failing one starts
		{name: "large noFragmentation refused before the failing one", sizes: []int{100, 1000, 100, 100, 100},
			noFrag: map[int]bool{1: true}, fail: map[int]error{2: fragNeeded, 4: eperm}, calls: 4,
			sent: []int{0, 2}, refused: map[int]error{1: stacks.ErrFragmentationNeeded}},
		{name: "framed message above the largest datagram before the failing one", framed: true,
			sizes: []int{100, max4 - framers.LengthPrefixHeaderLen + 2, 300, 400, 500},
			fail:  map[int]error{3: eperm}, calls: 3, // the refused one is never written
			sent: []int{0, 2}, refused: map[int]error{1: tooLarge}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runDatagramPartialWrite(t, tc) })
	}
}

func runDatagramPartialWrite(t *testing.T, tc dgPartialCase) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer peer.Close()
	addr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

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
	script := &dgScript{fail: tc.fail}
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{dgScriptStack{stacks.UDP(), script}}}
	if tc.framed {
		cfg.Framers = []framers.Framer{framers.NewLengthPrefix()}
	}
	conn, link := startScripted(t, sys, cfg)
	payloads := make([][]byte, len(tc.sizes))
	batch := &messages.SendBatch{}
	for i, size := range tc.sizes {
		id := sys.NewID()
		payloads[i] = bytes.Repeat([]byte{byte('a' + i)}, size)
		batch.Messages = append(batch.Messages, &messages.SendMessage{SendID: id, MessageID: id, Data: payloads[i], EndOfMessage: true,
			Props: &messages.MessageProps{Priority: 100, SafelyReplayable: true, ChecksumLen: -1, NoFragmentation: tc.noFrag[i]}})
	}
	out := expectOutcomes(t, link, batch)
	sys.AS.Root.Send(conn, batch) // one batch: one writeDatagrams
	<-link.Done()                 // the failed write failed the connection
	require.Error(t, link.Err(), "the connection failed")

	script.mu.Lock()
	calls, passed := script.calls, script.sent
	script.mu.Unlock()
	require.Equal(t, tc.calls, calls, "datagram writes: up to the failing one")
	require.Equal(t, len(tc.sent), passed, "datagrams passed to the socket")

	// what went out reached the peer, in order (loopback; the deadline
	// only bounds a failure)
	buf := make([]byte, 1<<16)
	for _, i := range tc.sent {
		require.NoError(t, peer.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, err := peer.Read(buf)
		require.NoError(t, err, "message %d reaches the peer", i)
		got := buf[:n]
		if tc.framed {
			require.Len(t, got, framers.LengthPrefixHeaderLen+len(payloads[i]))
			got = got[framers.LengthPrefixHeaderLen:]
		}
		require.Equal(t, payloads[i], got, "message %d reaches the peer", i)
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
		switch want, refused := tc.refused[i]; {
		case sent[i]:
			require.NoError(t, outcomes[i], "message %d was written before the failure: Sent", i)
			require.Equal(t, []string{"sent"}, traced[id], "message %d traced", i)
		case refused:
			var wantTL, gotTL *framers.TooLargeError
			if errors.As(want, &wantTL) {
				require.ErrorAs(t, outcomes[i], &gotTL, "message %d was refused on its own", i)
				require.Equal(t, *wantTL, *gotTL)
			} else {
				require.ErrorIs(t, outcomes[i], want, "message %d was refused on its own", i)
			}
			require.NotErrorIs(t, outcomes[i], syscall.EPERM, "message %d: its own SendError", i)
			require.Equal(t, []string{"send_error"}, traced[id], "message %d traced", i)
		default:
			require.ErrorIs(t, outcomes[i], syscall.EPERM, "message %d was not written: SendError", i)
			require.Equal(t, []string{"send_error"}, traced[id], "message %d traced", i)
		}
	}
}
