package actors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// hsOutcome is how the handshake of an early (0-RTT) transport of
// zeroRTTStack ends, after its dial returned.
type hsOutcome struct {
	// kind: "complete" (after), "fail" (after: the handshake's timeout),
	// "never", "reject" (complete after, the early data rejected:
	// WaitHandshake gives a new transport), or "writefail" (never; its
	// writes fail at once: the peer is gone)
	kind  string
	after time.Duration
}

var errHandshakeTimeout = errors.New("fake handshake timeout")

// zeroRTTStack dials as fakeStack; the transports of the addresses in hs
// are returned before their handshake completes (stacks.HandshakeWaiter),
// as QUIC's Dial with 0-RTT does. Every transport's peer end is read into
// what the transport got.
type zeroRTTStack struct {
	*fakeStack
	hs map[netip.AddrPort]hsOutcome

	mu   sync.Mutex
	got  map[netip.AddrPort]*peerData // the latest transport's to each address
	wait sync.WaitGroup               // the peer readers
}

// peerData is what the peer end of a transport read.
type peerData struct {
	mu   sync.Mutex
	data []byte
}

func (p *peerData) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.data)
}

func newZeroRTTStack(plan map[netip.AddrPort]outcome, hs map[netip.AddrPort]hsOutcome) *zeroRTTStack {
	return &zeroRTTStack{fakeStack: newFakeStack(plan), hs: hs, got: map[netip.AddrPort]*peerData{}}
}

// earlyTransportOf is a pipeTransport whose handshake has not completed.
type earlyTransportOf struct {
	*pipeTransport
	complete, failed, closed chan struct{}
	closeOnce                sync.Once
	err                      error
	next                     stacks.Transport // with complete: the early data was rejected, use this one
}

func (t *earlyTransportOf) HandshakeComplete() <-chan struct{} { return t.complete }

func (t *earlyTransportOf) WaitHandshake(ctx context.Context) (stacks.Transport, error) {
	select {
	case <-t.complete:
		return t.next, nil
	case <-t.failed:
		return nil, t.err
	case <-t.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *earlyTransportOf) Abort() error { return t.Close() }
func (t *earlyTransportOf) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return t.pipeTransport.Close()
}

func (s *zeroRTTStack) Dial(ctx context.Context, remote netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.fakeStack.Dial(ctx, remote, o)
	if err != nil {
		return nil, err
	}
	p := t.(*pipeTransport)
	hs, early := s.hs[remote]
	s.readPeer(remote, p, hs.kind == "writefail")
	if !early {
		return p, nil
	}
	et := &earlyTransportOf{pipeTransport: p, complete: make(chan struct{}), failed: make(chan struct{}), closed: make(chan struct{})}
	switch hs.kind {
	case "complete":
		time.AfterFunc(hs.after, func() { close(et.complete) })
	case "reject":
		time.AfterFunc(hs.after, func() {
			a, b := net.Pipe()
			np := &pipeTransport{Conn: a, peer: b, remote: remote}
			s.readPeer(remote, np, false)
			et.next = np
			close(et.complete)
		})
	case "fail":
		time.AfterFunc(hs.after, func() {
			et.err = errHandshakeTimeout
			close(et.failed)
		})
	}
	return et, nil
}

// readPeer reads the peer end of p until it closes (at once, when gone:
// p's writes fail), into what the stack got from remote.
func (s *zeroRTTStack) readPeer(remote netip.AddrPort, p *pipeTransport, gone bool) {
	pd := new(peerData)
	s.mu.Lock()
	s.got[remote] = pd
	s.mu.Unlock()
	if gone {
		_ = p.peer.Close()
		return
	}
	s.wait.Go(func() {
		buf := make([]byte, 512)
		for {
			n, err := p.peer.Read(buf)
			pd.mu.Lock()
			pd.data = append(pd.data, buf[:n]...)
			pd.mu.Unlock()
			if err != nil {
				return
			}
		}
	})
}

// received is what the peer at remote read from its latest transport.
func (s *zeroRTTStack) received(remote netip.AddrPort) string {
	s.mu.Lock()
	pd := s.got[remote]
	s.mu.Unlock()
	if pd == nil {
		return ""
	}
	return pd.String()
}

// TestRacerZeroRTT runs races with 0-RTT attempts (a first message,
// safely replayable, and transports returned before their handshake
// completes) through the real actors, in fake time. An early attempt
// carries the first message at once but does not win before its
// handshake completes: Ready waits for that, the race goes on meanwhile,
// a failed handshake is a failed attempt, and the first message goes
// again on the winner. Its Sent comes once, after Ready; never when the
// establishment fails.
func TestRacerZeroRTT(t *testing.T) {
	ms := time.Millisecond
	ok := outcome{kind: "ok"}
	tests := []struct {
		name string
		plan map[netip.AddrPort]outcome
		hs   map[netip.AddrPort]hsOutcome
		// wantStarts are the start offsets of the attempts, in order;
		// wantEnds their end offsets (-1: cancelled unfinished)
		wantStarts, wantEnds []time.Duration
		wantWon              int // index of the winning attempt, -1 none
		wantErr              error
		wantEvents           []string
		// wantFirst is what each peer read: the first message, or
		// nothing
		wantFirst map[netip.AddrPort]string
	}{
		{
			name:       "Ready waits for the handshake",
			plan:       map[netip.AddrPort]outcome{addrA: ok},
			hs:         map[netip.AddrPort]hsOutcome{addrA: {kind: "complete", after: 30 * ms}},
			wantStarts: []time.Duration{0}, wantEnds: []time.Duration{30 * ms}, wantWon: 0,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptWon 0"},
			wantFirst:  map[netip.AddrPort]string{addrA: "first"},
		},
		{
			name: "a dead server's attempt loses to the next one",
			plan: map[netip.AddrPort]outcome{addrA: ok, addrB: {kind: "ok", after: 10 * ms}},
			hs:   map[netip.AddrPort]hsOutcome{addrA: {kind: "never"}},
			// the race goes on: the second attempt starts after the
			// attempt delay and wins
			wantStarts: []time.Duration{0, 250 * ms}, wantEnds: []time.Duration{-1, 260 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptStarted 1", "AttemptWon 1", "AttemptCancelled 0"},
			wantFirst:  map[netip.AddrPort]string{addrA: "first", addrB: "first"},
		},
		{
			name:       "a failed handshake starts the next attempt at once",
			plan:       map[netip.AddrPort]outcome{addrA: ok, addrB: {kind: "ok", after: 10 * ms}},
			hs:         map[netip.AddrPort]hsOutcome{addrA: {kind: "fail", after: 50 * ms}},
			wantStarts: []time.Duration{0, 50 * ms}, wantEnds: []time.Duration{50 * ms, 60 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptFailed 0", "AttemptStarted 1", "AttemptWon 1"},
			wantFirst:  map[netip.AddrPort]string{addrA: "first", addrB: "first"},
		},
		{
			name:       "a failed write fails the attempt",
			plan:       map[netip.AddrPort]outcome{addrA: ok, addrB: {kind: "ok", after: 10 * ms}},
			hs:         map[netip.AddrPort]hsOutcome{addrA: {kind: "writefail"}},
			wantStarts: []time.Duration{0, 0}, wantEnds: []time.Duration{0, 10 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptFailed 0", "AttemptStarted 1", "AttemptWon 1"},
			wantFirst:  map[netip.AddrPort]string{addrB: "first"},
		},
		{
			name: "a waiting early attempt wins when its handshake completes first",
			plan: map[netip.AddrPort]outcome{addrA: ok, addrB: {kind: "ok", after: 10 * ms}},
			hs: map[netip.AddrPort]hsOutcome{addrA: {kind: "never"},
				addrB: {kind: "complete", after: 20 * ms}},
			wantStarts: []time.Duration{0, 250 * ms}, wantEnds: []time.Duration{-1, 280 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptStarted 1", "AttemptEarly 1", "AttemptWon 1", "AttemptCancelled 0"},
			// the second was never handed over before it won: the first
			// message went on it after its handshake
			wantFirst: map[netip.AddrPort]string{addrA: "first", addrB: "first"},
		},
		{
			name: "a waiting early attempt is handed over when the first fails",
			plan: map[netip.AddrPort]outcome{addrA: ok, addrB: {kind: "ok", after: 10 * ms}},
			hs: map[netip.AddrPort]hsOutcome{addrA: {kind: "fail", after: 300 * ms},
				addrB: {kind: "complete", after: 100 * ms}},
			wantStarts: []time.Duration{0, 250 * ms}, wantEnds: []time.Duration{300 * ms, 360 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptStarted 1", "AttemptEarly 1", "AttemptFailed 0", "AttemptWon 1"},
			wantFirst:  map[netip.AddrPort]string{addrA: "first", addrB: "first"},
		},
		{
			name:       "early data rejected: the first message goes again",
			plan:       map[netip.AddrPort]outcome{addrA: ok},
			hs:         map[netip.AddrPort]hsOutcome{addrA: {kind: "reject", after: 30 * ms}},
			wantStarts: []time.Duration{0}, wantEnds: []time.Duration{30 * ms}, wantWon: 0,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptWon 0"},
			wantFirst:  map[netip.AddrPort]string{addrA: "first"}, // the new transport's
		},
		{
			name:       "one dead server: an establishment error",
			plan:       map[netip.AddrPort]outcome{addrA: ok},
			hs:         map[netip.AddrPort]hsOutcome{addrA: {kind: "fail", after: 50 * ms}},
			wantStarts: []time.Duration{0}, wantEnds: []time.Duration{50 * ms}, wantWon: -1, wantErr: errHandshakeTimeout,
			wantEvents: []string{"AttemptStarted 0", "AttemptEarly 0", "AttemptFailed 0"},
			wantFirst:  map[netip.AddrPort]string{addrA: "first"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := &tracer{}
				sys := NewSystem(Config{Tracer: tr.record})
				defer shutdown(t, sys)
				zs := newZeroRTTStack(tt.plan, tt.hs)
				var remotes []netip.AddrPort
				for _, a := range []netip.AddrPort{addrA, addrB, addrC} {
					if _, ok := tt.plan[a]; ok {
						remotes = append(remotes, a)
					}
				}
				cfg := &messages.ConnectionConfig{Remotes: endpoints(remotes...), Stacks: []stacks.Stack{zs}}
				link := NewLink(sys.NewID(), 0, 0, true)
				first := &messages.SendMessage{SendID: 1, MessageID: 1, Data: []byte("first"), EndOfMessage: true,
					Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1, SafelyReplayable: true}}
				events := make(chan error, 4)
				require.NoError(t, link.AcquireSendExpect(context.Background(), len(first.Data), first.SendID,
					func(err error) { events <- err }))
				start := time.Now()
				res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link, FirstMessage: first})
				require.NoError(t, err)
				conn := res.(*ConnectionStarted).Conn

				synctest.Wait() // at once: the first message went on the first (early) attempt
				if tt.hs[addrA].kind != "writefail" {
					require.Equal(t, "first", zs.received(addrA), "the first message leaves at once, as 0-RTT data")
				}
				select {
				case <-link.Ready():
					t.Fatal("Ready before the early attempt's handshake completed")
				default:
				}
				require.Empty(t, events, "no Sent before Ready")

				<-link.Ready()
				elapsed := time.Since(start)
				if tt.wantErr != nil {
					require.ErrorIs(t, link.EstablishmentErr(), tt.wantErr)
					var f *EstablishmentFailure
					require.ErrorAs(t, link.EstablishmentErr(), &f)
					require.Len(t, f.Attempts, len(tt.wantStarts), "the failure lists every attempt")
					require.ErrorIs(t, <-events, tt.wantErr, "the first message fails with the establishment")
					require.Equal(t, tt.wantStarts, attemptsOf(f.Report), "starts")
					require.Equal(t, tt.wantEnds, endsOf(f.Report), "ends")
				} else {
					require.NoError(t, link.EstablishmentErr())
					require.Equal(t, tt.wantEnds[tt.wantWon], elapsed, "Ready when the winner's handshake completed")
					require.NoError(t, <-events, "Sent, after Ready")
					info, err := Ask(context.Background(), sys, conn, &messages.GetConnectionInfo{})
					require.NoError(t, err)
					report := info.(*messages.ConnectionInfo).EstablishmentReport
					require.Equal(t, tt.wantStarts, attemptsOf(report), "starts")
					require.Equal(t, tt.wantEnds, endsOf(report), "ends")
					for i, a := range report.Attempts {
						require.Equal(t, i == tt.wantWon, a.Won, "won flag of attempt %d", i)
					}
					synctest.Wait()
					for _, a := range remotes {
						require.Equal(t, tt.wantFirst[a], zs.received(a), "what %v read", a)
					}
					_, err = Ask(context.Background(), sys, conn, &messages.AbortConnection{})
					require.NoError(t, err)
				}
				<-link.Done()
				synctest.Wait()
				require.Empty(t, events, "one event for the first message")
				require.Equal(t, tt.wantEvents, tr.events())
				for _, a := range remotes {
					if p := zs.transport(a); p != nil {
						require.True(t, p.closed.Load(), "%v's transport is closed", a)
					}
				}
				zs.wait.Wait()
			})
		})
	}
}

func attemptsOf(r *messages.EstablishmentReport) []time.Duration {
	var out []time.Duration
	for _, a := range r.Attempts {
		out = append(out, time.Duration(a.StartOffsetNs))
	}
	return out
}

func endsOf(r *messages.EstablishmentReport) []time.Duration {
	var out []time.Duration
	for _, a := range r.Attempts {
		out = append(out, time.Duration(a.EndOffsetNs))
	}
	return out
}
