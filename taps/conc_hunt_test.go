package taps

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// A stress hunt on the public API of one Connection and its group: many
// goroutines send (Send, SendAsync, SendPartial, Batch), receive, set and
// read properties, clone, read the state and end the connection (Close,
// CloseGroup, Abort, AbortGroup) at once, from the moment Initiate returns
// or a Listener delivers the connection. The peer records the numbered
// messages it receives, and the invariants are checked after each round:
// every call returned in time, every send had exactly one outcome, a send
// that failed after an end failed for it, no message both failed and
// arrived, messages arrived whole and in order, after a graceful end every
// Sent message arrived, the state never went backwards and Done closed.

type huntKey struct{ stream, seq uint64 }

type huntEnd uint8

const (
	endClose huntEnd = iota
	endCloseGroup
	endAbort
	endAbortGroup
	endCloseAndAbort
	endCount
)

func (e huntEnd) graceful() bool { return e == endClose || e == endCloseGroup }

func (e huntEnd) String() string {
	return [...]string{"Close", "CloseGroup", "Abort", "AbortGroup", "Close+Abort"}[e]
}

// huntRound is the record of one round.
type huntRound struct {
	name     string
	end      huntEnd
	mu       sync.Mutex
	attempts map[huntKey]string  // how each message was sent
	outcomes map[huntKey][]error // each outcome (nil: Sent)
	received map[uint64][]uint64 // stream -> seqs, in arrival order
	bad      []string
	// connections (the hammered one, clones) that surely reach their peer
	peersDue atomic.Int64
	// multi: the peer receives with several receivers at once (the order
	// of arrival is then not checked, nor duplicates missed)
	multi bool
}

func newHuntRound(name string, end huntEnd) *huntRound {
	return &huntRound{name: name, end: end, attempts: map[huntKey]string{}, outcomes: map[huntKey][]error{}, received: map[uint64][]uint64{}}
}

func (r *huntRound) failf(format string, args ...any) {
	r.mu.Lock()
	r.bad = append(r.bad, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *huntRound) attempt(k huntKey, how string) {
	r.mu.Lock()
	r.attempts[k] = how
	r.mu.Unlock()
}

func (r *huntRound) outcome(k huntKey, err error) {
	r.mu.Lock()
	r.outcomes[k] = append(r.outcomes[k], err)
	r.mu.Unlock()
}

var (
	huntStreams atomic.Uint64
	huntOwners  sync.Map // stream -> *huntRound: a peer that comes late records in its sender's round
)

// huntMessage is stream, seq, a length and that many bytes derived from
// both: the receiver checks it is whole.
func huntMessage(stream, seq uint64) []byte {
	n := int((stream*7 + seq*13) % 300)
	b := make([]byte, 20+n)
	binary.BigEndian.PutUint64(b, stream)
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint32(b[16:], uint32(n))
	for i := range n {
		b[20+i] = byte(stream*31 + seq + uint64(i))
	}
	return b
}

// isHuntHello: the message a QUIC initiator sends first so that its
// stream reaches the Listener (stream 0).
func isHuntHello(m *Message) bool {
	k, ok := parseHuntMessage(m.Data)
	return ok && k == huntKey{}
}

func parseHuntMessage(b []byte) (huntKey, bool) {
	if len(b) < 20 {
		return huntKey{}, false
	}
	k := huntKey{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
	return k, bytes.Equal(b, huntMessage(k.stream, k.seq))
}

// huntCollect receives on c until it fails, recording each message; after
// the peer's end of stream it closes c. It returns when c is Done.
func (r *huntRound) huntCollect(c *Connection) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	record := func(m *Message) {
		if !m.EndOfMessage {
			r.failf("%s: a partial message received (%d bytes)", r.name, len(m.Data))
			return
		}
		k, ok := parseHuntMessage(m.Data)
		if !ok {
			r.failf("%s: a message received damaged (%d bytes)", r.name, len(m.Data))
			return
		}
		if o, ok := huntOwners.Load(k.stream); ok {
			o := o.(*huntRound)
			o.mu.Lock()
			o.received[k.stream] = append(o.received[k.stream], k.seq)
			o.mu.Unlock()
		}
	}
	ended := func(err error) {
		if ctx.Err() != nil {
			r.failf("%s: collector Receive did not end: %v (state %s)", r.name, err, c.State())
		}
	}
	if !r.multi {
		for {
			m, err := c.Receive(ctx)
			if err != nil {
				ended(err)
				break
			}
			record(m)
		}
	} else {
		// receivers at once: two Receive loops whose calls often give up
		// (a ctx of at most 200 µs: no message may be lost to it) and a
		// chain of ReceiveAsync; the order is not theirs to keep
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					short, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(200))*time.Microsecond)
					m, err := c.Receive(short)
					cancel()
					if err == nil {
						record(m)
						continue
					}
					if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
						continue // the short wait gave up: nothing was taken
					}
					ended(err)
					return
				}
			}()
		}
		wg.Add(1)
		var next func(*Connection, *Message, error)
		next = func(_ *Connection, m *Message, err error) {
			if err != nil {
				wg.Done()
				return
			}
			record(m)
			c.ReceiveAsync(next)
		}
		c.ReceiveAsync(next)
		wg.Wait()
	}
	_ = c.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		r.failf("%s: collector connection %d not Done (state %s)", r.name, c.ID(), c.State())
		c.Abort()
		<-c.Done()
	}
}

// bounded runs fn on a goroutine of wg and reports it if it does not
// return within 5 s.
func (r *huntRound) bounded(wg *sync.WaitGroup, what string, fn func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		done := make(chan struct{})
		go func() {
			defer close(done)
			fn()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			r.failf("%s: %s did not return within 5 s\n%s", r.name, what, buf)
			<-done
		}
	}()
}

const huntPerStream = 12

// huntSender sends huntPerStream numbered messages on c in one of its ways.
func (r *huntRound) huntSender(c *Connection, way int) (sent int) {
	stream := huntStreams.Add(1)
	huntOwners.Store(stream, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	asyncDone := make(chan struct{}, huntPerStream)
	async := 0
	var asyncSent atomic.Int64
	defer func() { sent += int(asyncSent.Load()) }()
	asyncSend := func(k huntKey, mc *MessageContext) {
		async++
		var once atomic.Int32
		c.SendAsync(huntMessage(k.stream, k.seq), mc, func(_ *Connection, err error) {
			if once.Add(1) > 1 {
				r.failf("%s: SendAsync handler of %v called again: %v", r.name, k, err)
				return
			}
			if err == nil {
				asyncSent.Add(1)
			}
			r.outcome(k, err)
			asyncDone <- struct{}{}
		})
	}
	for seq := uint64(1); seq <= huntPerStream; seq++ {
		k := huntKey{stream, seq}
		switch way {
		case 0:
			r.attempt(k, "Send")
			err := c.Send(ctx, huntMessage(stream, seq), nil)
			if err == nil {
				sent++
			}
			r.outcome(k, err)
		case 1:
			r.attempt(k, "SendAsync")
			asyncSend(k, nil)
		case 2:
			// a message in three parts: its outcome is that of the last
			// part, and an earlier part's failure (the message cannot be
			// whole) counts as the message's SendError
			r.attempt(k, "SendPartial")
			data := huntMessage(stream, seq)
			mc := NewMessageContext()
			var first error
			cuts := []int{0, 7, 19, len(data)}
			for i := range 3 {
				err := c.SendPartial(ctx, data[cuts[i]:cuts[i+1]], mc, i == 2)
				if err != nil && first == nil {
					first = err
				}
			}
			if first == nil {
				sent++
			}
			r.outcome(k, first)
		case 4:
			// a lifetime of a few µs: some are Expired, none of those
			// may arrive
			r.attempt(k, "Lifetime")
			asyncSend(k, NewMessageContext().Lifetime(time.Duration(1+rand.IntN(30))*time.Microsecond))
		case 3:
			r.attempt(k, "Batch")
			c.Batch(func() {
				asyncSend(k, nil)
				if seq < huntPerStream {
					seq++
					k := huntKey{stream, seq}
					r.attempt(k, "Batch")
					asyncSend(k, nil)
				}
			})
		}
		if seq%4 == 0 {
			runtime.Gosched()
		}
	}
	for range async {
		select {
		case <-asyncDone:
		case <-ctx.Done():
			r.failf("%s: stream %d: a SendAsync outcome never came", r.name, stream)
			return sent
		}
	}
	return sent
}

// peerDue counts a connection of stack with sent messages Sent if it
// surely reaches its peer: over TCP always, over TLS when it ends
// gracefully (an Abort may reset it before the Listener's end of the
// handshake), over QUIC when it also had a message Sent (its stream
// reaches the Listener with its first data).
func (r *huntRound) peerDue(stack string, sent int) {
	if stack == "tcp" || r.end.graceful() && (stack == "tls" || sent > 0) {
		r.peersDue.Add(1)
	}
}

// huntHammer runs every kind of call on c at once, ends it with r.end
// after a short random delay, and waits for every call and for c's Done.
func (r *huntRound) huntHammer(c *Connection, stack string, clone bool) {
	var wg sync.WaitGroup
	done := c.Done()
	// the terminal event reaches one handler, once, before Done (the
	// handlers are set before the end is asked for, as the connection
	// may still be in its first turn)
	var closedCalls, errorCalls atomic.Int32
	c.OnClosed(func(*Connection) {
		closedCalls.Add(1)
		r.checkNotDone(done, "Closed handler")
	})
	c.OnConnectionError(func(_ *Connection, err error) {
		errorCalls.Add(1)
		r.checkNotDone(done, "ConnectionError handler")
	})
	defer func() {
		cl, ce := closedCalls.Load(), errorCalls.Load()
		switch {
		case cl+ce != 1:
			r.failf("%s: %d Closed and %d ConnectionError events", r.name, cl, ce)
		case r.end == endAbort || r.end == endAbortGroup:
			if ce != 1 {
				r.failf("%s: Closed after %s", r.name, r.end)
			}
		}
	}()
	var sent atomic.Int64
	defer func() { r.peerDue(stack, int(sent.Load())) }()
	for way := range 5 {
		r.bounded(&wg, fmt.Sprintf("sender %d", way), func() { sent.Add(int64(r.huntSender(c, way))) })
	}
	r.bounded(&wg, "state watcher", func() {
		last := c.State()
		for {
			select {
			case <-done:
				if st := c.State(); st != StateClosed {
					r.failf("%s: Done closed in state %s", r.name, st)
				}
				return
			default:
			}
			st := c.State()
			if st < last {
				r.failf("%s: State went back from %s to %s", r.name, last, st)
			}
			last = st
			runtime.Gosched()
		}
	})
	r.bounded(&wg, "properties", func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			err := c.SetProperty(ConnPriority, uint64(i%50))
			var pe *PropertyError
			if err != nil && !errors.As(err, &pe) {
				r.failf("%s: SetProperty: %v", r.name, err)
			}
			if p := c.GetProperties(); p == nil {
				r.failf("%s: GetProperties nil", r.name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			members, err := c.GroupedConnections(ctx)
			cancel()
			if err != nil {
				r.failf("%s: GroupedConnections: %v", r.name, err)
			} else if len(members) > 0 && !slices.Contains(members, c) && c.State() != StateClosed {
				// (once ended, a connection lists the rest of its group)
				r.failf("%s: GroupedConnections of an open connection without it", r.name)
			}
		}
	})
	r.bounded(&wg, "Receive", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			m, err := c.Receive(ctx)
			if err == nil && isHuntHello(m) {
				continue
			}
			if err == nil || ctx.Err() != nil {
				r.failf("%s: Receive on the sending side: %v", r.name, err)
			}
			return
		}
	})
	r.bounded(&wg, "ReceiveAsync", func() {
		got := make(chan error, 2)
		var calls atomic.Int32
		var handler func(*Connection, *Message, error)
		handler = func(_ *Connection, m *Message, err error) {
			if calls.Add(1) > 1 {
				r.failf("%s: ReceiveAsync handler called again: %v", r.name, err)
			}
			if err == nil && isHuntHello(m) {
				calls.Add(-1)
				c.ReceiveAsync(handler)
				return
			}
			got <- err
		}
		c.ReceiveAsync(handler)
		select {
		case err := <-got:
			if err == nil {
				r.failf("%s: ReceiveAsync on the sending side got a message", r.name)
			}
		case <-time.After(5 * time.Second):
			r.failf("%s: ReceiveAsync handler never called", r.name)
		}
	})
	if clone {
		r.bounded(&wg, "Clone", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cl, err := c.Clone(ctx)
			if err != nil {
				var ce *CloneError
				if !errors.As(err, &ce) {
					r.failf("%s: Clone: %v", r.name, err)
				}
				return
			}
			r.peerDue(stack, r.huntSender(cl, 0))
			what := "Close"
			if r.end == endCloseGroup || r.end == endAbortGroup {
				// the group's end reaches the clone, made before it or
				// while it went on
				what = r.end.String() + " of its group"
				select {
				case <-cl.Done():
				case <-done:
				}
			} else {
				_ = cl.Close()
			}
			select {
			case <-cl.Done():
			case <-time.After(5 * time.Second):
				r.failf("%s: the clone %d not Done after %s (state %s)", r.name, cl.ID(), what, cl.State())
				cl.Abort()
				<-cl.Done()
			}
		})
	}
	// the end, right away or after a few scheduler turns
	for range rand.IntN(40) {
		runtime.Gosched()
	}
	switch r.end {
	case endClose:
		if err := c.Close(); err != nil {
			r.failf("%s: Close: %v", r.name, err)
		}
	case endCloseGroup:
		c.CloseGroup()
	case endAbort:
		c.Abort()
	case endAbortGroup:
		c.AbortGroup()
	case endCloseAndAbort:
		var both sync.WaitGroup
		both.Add(2)
		go func() { defer both.Done(); _ = c.Close() }()
		go func() { defer both.Done(); c.Abort() }()
		both.Wait()
	}
	if st := c.State(); st < StateClosing {
		r.failf("%s: state %s after %s returned", r.name, st, r.end)
	}
	if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
		r.failf("%s: a second Close: %v", r.name, err)
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.failf("%s: connection %d not Done after %s (state %s)", r.name, c.ID(), r.end, c.State())
		c.Abort()
		<-done
	}
}

// checkNotDone reports a handler that runs after Done was closed.
func (r *huntRound) checkNotDone(done <-chan struct{}, what string) {
	select {
	case <-done:
		r.failf("%s: %s ran after Done", r.name, what)
	default:
	}
}

// verify checks the round's record.
func (r *huntRound) verify(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	bad := r.bad
	for k, how := range r.attempts {
		outs := r.outcomes[k]
		if len(outs) != 1 {
			bad = append(bad, fmt.Sprintf("%s: message %v (%s) had %d outcomes: %v", r.name, k, how, len(outs), outs))
			continue
		}
		err := outs[0]
		if err == nil {
			continue
		}
		var se *SendError
		switch {
		case how == "Lifetime" && errors.Is(err, ErrExpired) && errors.As(err, &se):
		case !errors.As(err, &se):
			bad = append(bad, fmt.Sprintf("%s: message %v (%s) failed with %T %v, not a *SendError", r.name, k, how, err, err))
		case r.end.graceful() && !errors.Is(err, ErrNotAllowed) && !errors.Is(err, ErrClosed):
			bad = append(bad, fmt.Sprintf("%s: message %v (%s) after %s failed with %v", r.name, k, how, r.end, err))
		case !errors.Is(err, ErrNotAllowed) && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrAborted):
			bad = append(bad, fmt.Sprintf("%s: message %v (%s) after %s failed with %v", r.name, k, how, r.end, err))
		}
	}
	got := map[huntKey]bool{}
	for stream, seqs := range r.received {
		if r.multi {
			seqs = slices.Clone(seqs)
			slices.Sort(seqs)
		}
		for i, seq := range seqs {
			k := huntKey{stream, seq}
			if i > 0 && seq <= seqs[i-1] {
				bad = append(bad, fmt.Sprintf("%s: stream %d received out of order or twice: %v", r.name, stream, seqs))
				break
			}
			got[k] = true
			if _, ok := r.attempts[k]; !ok {
				bad = append(bad, fmt.Sprintf("%s: message %v received, never sent", r.name, k))
			} else if outs := r.outcomes[k]; len(outs) == 1 && outs[0] != nil {
				bad = append(bad, fmt.Sprintf("%s: message %v (%s) received and reported %v", r.name, k, r.attempts[k], outs[0]))
			}
		}
	}
	if r.end.graceful() {
		for k, outs := range r.outcomes {
			if len(outs) == 1 && outs[0] == nil && !got[k] {
				bad = append(bad, fmt.Sprintf("%s: message %v (%s) Sent before a %s but never received", r.name, k, r.attempts[k], r.end))
			}
		}
	}
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("... and %d more", len(bad)-10))
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// huntSetup is one transport to hunt on: a Listener and a Preconnection
// that reaches it.
type huntSetup struct {
	name  string
	ln    *Listener
	pre   *Preconnection
	clone bool
}

func huntSetups(t *testing.T, sys *System) []huntSetup {
	tcp, tcpPre := tcpSetup(t, sys)
	pki := newTestPKI(t)
	tlsLn, tlsPre := secureSetup(t, sys, pki, func() *TransportProperties { return tlsOnlyProps(t) })
	quicLn, quicPre := secureSetup(t, sys, pki, func() *TransportProperties { return quicOnly(t) })
	return []huntSetup{
		{"tcp", tcp, tcpPre, true},
		{"tls", tlsLn, tlsPre, true},
		{"quic", quicLn, quicPre, true},
	}
}

// tcpSetup is a length-prefix TCP Listener on loopback and a
// Preconnection (TCP only) that reaches it.
func tcpSetup(t *testing.T, sys *System) (*Listener, *Preconnection) {
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
	pre.AddFramer(framers.NewLengthPrefix())
	return ln, pre
}

// secureSetup is a length-prefix secure Listener on loopback (pki's
// server identity, the properties tp makes) and a Preconnection that
// reaches it with the same properties.
func secureSetup(t *testing.T, sys *System, pki *testPKI, tp func() *TransportProperties) (*Listener, *Preconnection) {
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	return ln, securePre(sys, ln, pki.clientSec(), tp())
}

// runHunt runs rounds rounds per setup and end, on the initiated side
// (the peer collects) and on the accepted one (the initiator collects).
func runHunt(t *testing.T, rounds int, ends ...huntEnd) {
	// the descriptors open before: the runtime's poller is made by the
	// first socket, which this one is when the test runs alone
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	warm.Close()
	baseFDs := openFDs(t)
	sys := newTestSystem(t)
	var collectors sync.WaitGroup
	defer func() {
		collectors.Wait()
		if !t.Failed() {
			// every connection is Done and every Listener's Done is closed:
			// their sockets are released
			require.Equal(t, baseFDs, openFDs(t), "descriptors left open")
		}
	}()
	for _, s := range huntSetups(t, sys) {
		// every connection the Listener delivers is collected (on the
		// initiated side) or hammered (on the accepted side)
		accepted := make(chan *Connection, 64)
		go func() {
			defer close(accepted)
			for {
				c, err := s.ln.Accept(context.Background())
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		// the accepted side first: a clone's peer that comes late (after
		// an Abort) must not be taken for the connection to hammer
		for _, side := range []string{"accepted", "initiated"} {
			for i := range rounds {
				for _, end := range ends {
					r := newHuntRound(fmt.Sprintf("%s/%s/%s/%d", s.name, side, end, i), end)
					r.multi = i%2 == 1
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					c, err := s.pre.Initiate(ctx)
					cancel()
					require.NoError(t, err, r.name)
					if side == "initiated" {
						// collect the peers while the hammer runs, and
						// then until every clone's peer came
						peers := make(chan struct{})
						var n atomic.Int64
						collect := func(p *Connection) {
							n.Add(1)
							collectors.Add(1)
							go func() { defer collectors.Done(); r.huntCollect(p); peers <- struct{}{} }()
						}
						hammered := make(chan struct{})
						go func() { r.huntHammer(c, s.name, s.clone); close(hammered) }()
						ended := 0
						deadline := time.After(15 * time.Second)
					loop:
						for {
							select {
							case p := <-accepted:
								collect(p)
							case <-peers:
								ended++
							case <-hammered:
								hammered = nil
							case <-deadline:
								t.Fatalf("%s: the round did not end (%d of %d peers ended)", r.name, ended, n.Load())
							}
							if hammered == nil && int64(ended) == n.Load() && int64(ended) >= r.peersDue.Load() {
								break loop
							}
						}
					} else {
						// a QUIC stream reaches the Listener with its
						// first message
						if s.name == "quic" {
							c.SendAsync(huntMessage(0, 0), nil, nil)
						}
						var p *Connection
						select {
						case p = <-accepted:
						case <-time.After(5 * time.Second):
							t.Fatalf("%s: no connection accepted", r.name)
						}
						collected := make(chan struct{})
						go func() { r.huntCollect(c); close(collected) }()
						r.huntHammer(p, s.name, false)
						select {
						case <-collected:
						case <-time.After(10 * time.Second):
							t.Fatalf("%s: the initiator's collector did not end", r.name)
						}
					}
					r.verify(t)
					if t.Failed() {
						return
					}
				}
			}
		}
		s.ln.Stop()
		for p := range accepted {
			p.Abort()
			<-p.Done()
		}
		<-s.ln.Done()
	}
}

// TestConnectionConcurrencyHunt: 2 rounds (GOTAPS_HUNT_ROUNDS to hunt
// longer) of every end, on each side of TCP, TLS and QUIC connections.
func TestConnectionConcurrencyHunt(t *testing.T) {
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("GOTAPS_HUNT_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	runHunt(t, rounds, endClose, endCloseGroup, endAbort, endAbortGroup, endCloseAndAbort)
}
