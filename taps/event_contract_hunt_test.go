package taps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// A hunt on the event contract of one Connection (RFC 9622 §7-§10 as the
// handlers' doc comments promise it): exactly one terminal event, nothing
// after it; every SendAsync gets one Sent or SendError, before the
// terminal event; Received events in order, none after the end; handlers
// one at a time; State Closed in the terminal handler, Done closed after
// it; and the trace never lags what a handler saw.

// count returns how many records of connection id have kind and event
// ("": any).
func (l *traceLog) count(id uint64, kind, event string) int {
	n := 0
	for _, r := range l.of(id) {
		if r.Kind == kind && (event == "" || r.Event == event) {
			n++
		}
	}
	return n
}

// contractLog records the events one Connection's handlers get, and checks
// the contract as they come.
type contractLog struct {
	et     *traceLog
	mu     sync.Mutex
	events []string
	bad    []string
	in     atomic.Int32
	term   string
	sent   int // Sent events so far
	// sendErrs: SendError events so far
	sendErrs int
	recv     int // Received events so far
	ended    chan struct{}
	// onRecvErr, when set, runs in the ReceiveError handler
	onRecvErr func(c *Connection)
}

func newContractLog(et *traceLog) *contractLog {
	return &contractLog{et: et, ended: make(chan struct{})}
}

func (l *contractLog) failf(format string, args ...any) {
	l.mu.Lock()
	l.bad = append(l.bad, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// enter records ev as a handler starts; leave as it returns.
func (l *contractLog) enter(c *Connection, ev string) {
	if n := l.in.Add(1); n != 1 {
		l.failf("%s: %d handlers at once", ev, n)
	}
	l.mu.Lock()
	// a receive that finds the connection ended gets its ReceiveError
	// after the end; a send refused then, its SendError (sends in these
	// rounds are all made before the end)
	if l.term != "" && ev != "ReceiveError" {
		l.bad = append(l.bad, fmt.Sprintf("%s after the terminal %s", ev, l.term))
	}
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *contractLog) leave() { l.in.Add(-1) }

// terminal records the terminal event ev and checks the connection's
// State, its Done and the trace in its handler.
func (l *contractLog) terminal(c *Connection, ev string) {
	l.enter(c, ev)
	defer l.leave()
	l.mu.Lock()
	l.term = ev
	l.mu.Unlock()
	if s := c.State(); s != StateClosed {
		l.failf("%s: State %s in its handler", ev, s)
	}
	select {
	case <-c.Done():
		l.failf("%s: Done closed before its handler ran", ev)
	default:
	}
	if l.et != nil {
		if n := l.et.count(c.ID(), "state", ev); n != 1 {
			l.failf("%s: %d state records of it when its handler ran (trace %v)", ev, n, stateSteps(l.et.of(c.ID())))
		}
	}
	// calls back into the ended Connection do not block
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		l.failf("%s: Close in its handler: %v", ev, err)
	}
	c.Abort()
	_ = c.GetProperties()
	close(l.ended)
}

// watch sets c's handlers to record in l.
func (l *contractLog) watch(c *Connection) {
	c.OnReady(func(c *Connection) { l.enter(c, "Ready"); l.leave() })
	c.OnClosed(func(c *Connection) { l.terminal(c, "Closed") })
	c.OnConnectionError(func(c *Connection, err error) { l.terminal(c, "ConnectionError") })
	c.OnEstablishmentError(func(c *Connection, err error) { l.terminal(c, "EstablishmentError") })
	c.OnSoftError(func(c *Connection, err error) { l.enter(c, "SoftError"); l.leave() })
}

// sendAsync sends msg with a handler that records its event.
func (l *contractLog) sendAsync(c *Connection, msg string) {
	c.SendAsync([]byte(msg), nil, func(c *Connection, err error) {
		ev := "Sent:" + msg
		if err != nil {
			ev = "SendError:" + msg
		}
		l.enter(c, ev)
		defer l.leave()
		kind, event := "sent", "Sent"
		l.mu.Lock()
		if err == nil {
			l.sent++
		} else {
			l.sendErrs++
			kind, event = "send_error", "SendError"
		}
		n := l.sent
		if err != nil {
			n = l.sendErrs
		}
		l.mu.Unlock()
		if l.et != nil {
			if got := l.et.count(c.ID(), kind, event); got < n {
				l.failf("%s: %d %s records for %d %s events", ev, got, event, n, event)
			}
		}
	})
}

// receiveAll receives with ReceiveAsync until a ReceiveError, recording
// each Message; fn, when not nil, runs in each Received handler.
func (l *contractLog) receiveAll(c *Connection, fn func(c *Connection, m *Message)) {
	var next func(c *Connection, m *Message, err error)
	next = func(c *Connection, m *Message, err error) {
		if err != nil {
			l.enter(c, "ReceiveError")
			if l.onRecvErr != nil {
				l.onRecvErr(c)
			}
			l.leave()
			return
		}
		l.enter(c, "Received:"+string(m.Data))
		l.mu.Lock()
		l.recv++
		n := l.recv
		l.mu.Unlock()
		if l.et != nil {
			if got := l.et.count(c.ID(), "received", ""); got < n {
				l.failf("Received %q: %d received records for %d Received events", m.Data, got, n)
			}
		}
		if fn != nil {
			fn(c, m)
		}
		l.leave()
		c.ReceiveAsync(next)
	}
	c.ReceiveAsync(next)
}

// check waits for the terminal event and Done, and checks the log: one
// terminal event, last; each message sent once got one Sent or SendError.
func (l *contractLog) check(t *testing.T, name string, c *Connection, sent []string) []string {
	t.Helper()
	select {
	case <-l.ended:
	case <-time.After(10 * time.Second):
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("%s: no terminal event; events %v", name, l.events)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Done not closed", name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	terms := 0
	outcomes := map[string]int{}
	for _, ev := range l.events {
		switch ev {
		case "Closed", "ConnectionError", "EstablishmentError":
			terms++
		}
		if k, msg, ok := strings.Cut(ev, ":"); ok && (k == "Sent" || k == "SendError") {
			outcomes[msg]++
		}
	}
	// Sent and Received in the order the messages were sent
	last := map[string]int{"Sent": -1, "Received": -1}
	for _, ev := range l.events {
		k, msg, _ := strings.Cut(ev, ":")
		var n int
		if _, ok := last[k]; ok {
			if _, err := fmt.Sscanf(msg, "m%d", &n); err == nil {
				if n <= last[k] {
					l.bad = append(l.bad, fmt.Sprintf("%s out of order", ev))
				}
				last[k] = n
			}
		}
	}
	if terms != 1 {
		l.bad = append(l.bad, fmt.Sprintf("%d terminal events", terms))
	}
	for _, m := range sent {
		if outcomes[m] != 1 {
			l.bad = append(l.bad, fmt.Sprintf("message %q had %d send events", m, outcomes[m]))
		}
	}
	require.Empty(t, l.bad, "%s: events %v", name, l.events)
	return append([]string(nil), l.events...)
}

// eventSetup is a Listener, a Preconnection that reaches it, and the trace
// of their System.
type eventSetup struct {
	name string
	ln   *Listener
	pre  *Preconnection
}

func eventSetups(t *testing.T, sys *System) []eventSetup {
	var out []eventSetup
	for _, s := range huntSetups(t, sys) {
		out = append(out, eventSetup{s.name, s.ln, s.pre})
	}
	path := filepath.Join(t.TempDir(), "events.sock")
	uln, err := unixListen(t, sys, path)
	require.NoError(t, err)
	upre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	upre.AddFramer(framers.NewLengthPrefix())
	out = append(out, eventSetup{"unix", uln, upre})
	ls := lifecycleSetups(t, sys)
	out = append(out, eventSetup{"udp", ls[2].ln, ls[2].pre})
	ls[0].ln.Stop()
	ls[1].ln.Stop()
	return out
}

// scriptedEchoServer is echoServer whose connections end as the
// messages "peer-abort" (Abort) and "peer-close" (Close) ask.
func scriptedEchoServer(t *testing.T, ln *Listener) {
	serveEach(t, ln, func(ctx context.Context, s *Connection) {
		for {
			m, err := s.Receive(ctx)
			if err != nil {
				_ = s.Close()
				return
			}
			switch string(m.Data) {
			case "peer-abort":
				s.Abort()
				return
			case "peer-close":
				_ = s.Close()
				return
			}
			if s.Send(ctx, m.Data, nil) != nil {
				return
			}
		}
	})
}

func TestEventContractHunt(t *testing.T) {
	et := new(traceLog)
	sys := newTestSystem(t, WithTracer(et.add))
	for _, s := range eventSetups(t, sys) {
		scriptedEchoServer(t, s.ln)
		ends := []string{"close", "abort", "close+abort", "abort+close", "close2", "closeInRecv", "abortInSent"}
		if s.name != "udp" { // a UDP peer's end is not seen
			ends = append(ends, "peerAbort", "peerClose+close")
		}
		for _, end := range ends {
			for i := range 5 {
				name := fmt.Sprintf("%s/%s/%d", s.name, end, i)
				l := newContractLog(et)
				c, err := s.pre.Initiate(testCtx(t))
				require.NoError(t, err, name)
				l.watch(c)
				// the ends from handlers wait for every SendAsync to have
				// returned (a send after the end gets its SendError after it)
				sendsDone := make(chan struct{})
				var fn func(c *Connection, m *Message)
				switch end {
				case "closeInRecv":
					fn = func(c *Connection, m *Message) {
						if string(m.Data) == "m3" {
							<-sendsDone
							_ = c.Close()
							_ = c.GetProperties()
						}
					}
				}
				l.receiveAll(c, fn)
				var sent []string
				for k := range 8 {
					msg := fmt.Sprintf("m%d", k)
					sent = append(sent, msg)
					if end == "abortInSent" && k == 4 {
						c.SendAsync([]byte(msg), nil, func(c *Connection, err error) {
							ev := "Sent:" + msg
							if err != nil {
								ev = "SendError:" + msg
							}
							l.enter(c, ev)
							<-sendsDone
							c.Abort()
							l.leave()
						})
						continue
					}
					l.sendAsync(c, msg)
				}
				close(sendsDone)
				switch end {
				case "peerAbort":
					l.sendAsync(c, "peer-abort")
					sent = append(sent, "peer-abort")
				case "peerClose+close":
					l.sendAsync(c, "peer-close")
					sent = append(sent, "peer-close")
					require.NoError(t, c.Close())
				case "close":
					require.NoError(t, c.Close())
				case "abort":
					c.Abort()
				case "close+abort":
					go c.Abort()
					_ = c.Close()
				case "abort+close":
					c.Abort()
					_ = c.Close()
				case "close2":
					require.NoError(t, c.Close())
					if err := c.Close(); err != nil {
						require.ErrorIs(t, err, ErrClosed, name)
					}
				}
				events := l.check(t, name, c, sent)
				term := l.term
				if i == 0 {
					t.Logf("%s: %v", name, events)
				}
				if end == "close" || end == "close2" || end == "peerClose+close" {
					require.Equal(t, "Closed", term, name)
				}
				// the trace's state records: the life the events show
				states := stateSteps(et.of(c.ID()))
				require.NotEmpty(t, states, name)
				require.Equal(t, "Establishing->Established Ready", states[0], name)
				last := states[len(states)-1]
				require.True(t, strings.HasSuffix(last, "->Closed "+term), "%s: trace %v, events %v", name, states, events)
				// after Closed, Close reports it and Abort does nothing
				require.ErrorIs(t, c.Close(), ErrClosed)
				c.Abort()
				require.Equal(t, StateClosed, c.State())
			}
		}
	}
}

// TestEventContractOnReadyRacingTheEnd: an OnReady set (on a connection
// already Ready: it is called at once) while another goroutine aborts the
// connection runs before the ConnectionError handler or not at all, never
// after it.
func TestEventContractOnReadyRacingTheEnd(t *testing.T) {
	sys := newTestSystem(t)
	ln, pre := tcpSetup(t, sys)
	discardServer(t, ln)
	for i := range 200 {
		l := newContractLog(nil)
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err)
		c.OnConnectionError(func(c *Connection, err error) { l.terminal(c, "ConnectionError") })
		go c.Abort()
		c.OnReady(func(c *Connection) { l.enter(c, "Ready"); l.leave() })
		l.check(t, fmt.Sprint(i), c, nil)
	}
}

// TestReceiveAsyncLoopGetsTheBufferedMessagesBeforeTheEnd: a ReceiveAsync
// loop (each Received handler asks for the next) that closes the
// connection from a Received handler while later messages are already
// received (the peer wrote them in one write) gets those messages before
// the Closed event, and before Done is closed, with or without a Closed
// handler; only the ReceiveError that follows them may come after.
func TestReceiveAsyncLoopGetsTheBufferedMessagesBeforeTheEnd(t *testing.T) {
	for _, withHandler := range []bool{true, false} {
		t.Run(fmt.Sprint("OnClosed=", withHandler), func(t *testing.T) {
			sys := newTestSystem(t)
			ln, r := rawListener(t)
			c := initiateTo(t, sys, r, framers.NewLengthPrefix())
			peer, err := ln.Accept()
			require.NoError(t, err)
			defer peer.Close()
			var mu sync.Mutex
			var events []string
			add := func(ev string) {
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
			}
			if withHandler {
				c.OnClosed(func(*Connection) { add("Closed") })
			}
			var next func(c *Connection, m *Message, err error)
			next = func(c *Connection, m *Message, err error) {
				if err != nil {
					return
				}
				select {
				case <-c.Done():
					add("Received after Done: " + string(m.Data))
				default:
					add(string(m.Data))
				}
				if string(m.Data) == "m1" {
					require.NoError(t, c.Close())
				}
				c.ReceiveAsync(next)
			}
			_, err = peer.Write(frame("m0", "m1", "m2", "m3"))
			require.NoError(t, err)
			c.ReceiveAsync(next)
			// the close waits for the peer's end of stream (it reads and
			// discards until then), so as not to lose what was sent
			_, _ = io.Copy(io.Discard, peer)
			require.NoError(t, peer.Close())
			requireDone(t, c)
			mu.Lock()
			defer mu.Unlock()
			want := []string{"m0", "m1", "m2", "m3"}
			if withHandler {
				want = append(want, "Closed")
			}
			require.Equal(t, want, events)
		})
	}
}

// TestEventContractEstablishmentEnds: InitiateAsync ended at once or a
// little later by Close, Abort or both (over TCP, TLS and QUIC, with
// messages queued) has one terminal event (Closed after a Close before
// Ready, EstablishmentError after an Abort before Ready, ConnectionError
// after Ready), a Ready only before it, every queued message's one
// SendError or Sent before it, and Err to match.
func TestEventContractEstablishmentEnds(t *testing.T) {
	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	for _, s := range huntSetups(t, sys) {
		echoServer(t, s.ln)
		for i := range 60 {
			end := []string{"close", "abort", "close+abort"}[i%3]
			name := fmt.Sprintf("%s/%s/%d", s.name, end, i)
			l := newContractLog(tl)
			c, err := s.pre.InitiateAsync(testCtx(t))
			require.NoError(t, err, name)
			l.watch(c)
			sent := []string{"m0", "m1"}
			for _, m := range sent {
				l.sendAsync(c, m)
			}
			if i%2 == 1 {
				<-c.link.Ready() // Ready or its end
			}
			switch end {
			case "close":
				_ = c.Close()
			case "abort":
				c.Abort()
			case "close+abort":
				go c.Abort()
				_ = c.Close()
			}
			events := l.check(t, name, c, sent)
			ready := slices.Contains(events, "Ready")
			switch l.term {
			case "Closed":
				require.NoError(t, c.Err(), name)
			case "EstablishmentError":
				require.False(t, ready, "%s: %v", name, events)
				var ee *EstablishmentError
				require.ErrorAs(t, c.Err(), &ee, name)
			case "ConnectionError":
				require.True(t, ready, "%s: %v", name, events)
				var ce *ConnectionError
				require.ErrorAs(t, c.Err(), &ce, name)
			}
			if end == "close" && !ready {
				require.Equal(t, "Closed", l.term, "%s: %v", name, events)
			}
		}
	}
}

// TestEventContractAcceptedSide: a connection a Listener delivers (TCP,
// TLS, QUIC, Unix) whose initiator sends and then closes or aborts gets
// its Received events in order and then one terminal event (it closes
// at its ReceiveError), nothing after it, traced before its handler.
func TestEventContractAcceptedSide(t *testing.T) {
	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	setups := eventSetups(t, sys)
	for _, s := range setups[:4] { // not UDP: its peer's end is not seen
		for i := range 10 {
			name := fmt.Sprintf("%s/%d", s.name, i)
			c, err := s.pre.Initiate(testCtx(t))
			require.NoError(t, err, name)
			var sent sync.WaitGroup
			for k := range 8 {
				sent.Add(1)
				c.SendAsync(fmt.Appendf(nil, "m%d", k), nil, func(*Connection, error) { sent.Done() })
			}
			p, err := s.ln.Accept(testCtx(t))
			require.NoError(t, err, name)
			l := newContractLog(tl)
			l.watch(p)
			l.onRecvErr = func(p *Connection) { _ = p.Close() } // the peer's end half-closes a stream: end this side too
			l.receiveAll(p, nil)
			sent.Wait()
			if i%2 == 0 {
				require.NoError(t, c.Close())
			} else {
				c.Abort()
			}
			events := l.check(t, name, p, nil)
			require.NotContains(t, events, "Ready", name)
			<-c.Done()
		}
	}
}

// TestEventContractBlockingHandler: while a Received handler blocks, the
// connection's other calls from other goroutines go on (a blocking Send
// is Sent, GetProperties answers); from the handler, a blocking Send,
// GetProperties and Close do not deadlock, and the Closed event follows
// the handler (TCP, TLS, QUIC, Unix, UDP).
func TestEventContractBlockingHandler(t *testing.T) {
	sys := newTestSystem(t)
	for _, s := range eventSetups(t, sys) {
		echoServer(t, s.ln)
		c, err := s.pre.Initiate(testCtx(t))
		require.NoError(t, err, s.name)
		l := newContractLog(nil)
		l.watch(c)
		blocked, release := make(chan struct{}), make(chan struct{})
		inHandler := make(chan error, 1)
		l.receiveAll(c, func(c *Connection, m *Message) {
			if string(m.Data) != "first" {
				return
			}
			close(blocked)
			<-release
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := c.Send(ctx, []byte("from the handler"), nil)
			if err == nil {
				_, err = c.GetPropertiesContext(ctx)
			}
			if err == nil {
				err = c.Close()
			}
			inHandler <- err
		})
		l.sendAsync(c, "first")
		select {
		case <-blocked:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no Received", s.name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		require.NoError(t, c.Send(ctx, []byte("while it blocks"), nil), s.name)
		_, err = c.GetPropertiesContext(ctx)
		require.NoError(t, err, s.name)
		cancel()
		close(release)
		select {
		case err := <-inHandler:
			require.NoError(t, err, s.name)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the handler's calls did not return", s.name)
		}
		events := l.check(t, s.name, c, []string{"first"})
		require.Equal(t, "Closed", l.term, "%s: %v", s.name, events)
	}
}

// TestEventContractGroupEnds: CloseGroup, AbortGroup, or both at once, on
// a connection and its Clones (TCP, TLS, QUIC), with messages queued on
// each: every member has its own one terminal event (Closed after
// CloseGroup alone, ConnectionError after AbortGroup alone), each
// message's one Sent or SendError before it, traced before its handler.
func TestEventContractGroupEnds(t *testing.T) {
	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	for _, s := range huntSetups(t, sys) {
		echoServer(t, s.ln)
		for i := range 9 {
			end := []string{"CloseGroup", "AbortGroup", "both"}[i%3]
			name := fmt.Sprintf("%s/%s/%d", s.name, end, i)
			c, err := s.pre.Initiate(testCtx(t))
			require.NoError(t, err, name)
			members := []*Connection{c}
			for range 3 {
				cl, err := c.Clone(testCtx(t))
				require.NoError(t, err, name)
				members = append(members, cl)
			}
			logs := make([]*contractLog, len(members))
			var sent []string
			for k := range 4 {
				sent = append(sent, fmt.Sprintf("m%d", k))
			}
			for j, m := range members {
				logs[j] = newContractLog(tl)
				logs[j].watch(m)
				logs[j].receiveAll(m, nil)
				for _, msg := range sent {
					logs[j].sendAsync(m, msg)
				}
			}
			switch end {
			case "CloseGroup":
				members[i%len(members)].CloseGroup()
			case "AbortGroup":
				members[i%len(members)].AbortGroup()
			case "both":
				go members[0].AbortGroup()
				members[len(members)-1].CloseGroup()
			}
			for j, m := range members {
				mname := fmt.Sprintf("%s/member%d", name, j)
				events := logs[j].check(t, mname, m, sent)
				switch end {
				case "CloseGroup":
					require.Equal(t, "Closed", logs[j].term, "%s: %v", mname, events)
				case "AbortGroup":
					require.Equal(t, "ConnectionError", logs[j].term, "%s: %v", mname, events)
				}
			}
		}
	}
}

// TestEventContractReestablishment: a connection under
// WithReestablishment whose transport is lost twice, then closed or
// aborted while Established or during its backoff: Reestablishing and
// Reestablished alternate, one terminal event (Closed after Close,
// ConnectionError after Abort) ends it, nothing after it, and the trace's
// state records follow the same life.
func TestEventContractReestablishment(t *testing.T) {
	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	accepted := make(chan *Connection, 16)
	serveEach(t, ln, func(ctx context.Context, s *Connection) { accepted <- s })
	for i := range 8 {
		name := fmt.Sprint(i)
		pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))),
			WithReestablishment(ReestablishPolicy{Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 20}))
		pre.AddFramer(framers.NewLengthPrefix())
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err, name)
		l := newContractLog(tl)
		l.watch(c)
		reest := make(chan struct{}, 4)
		lost := make(chan struct{}, 4)
		c.OnReestablishing(func(c *Connection, _ error, n int) {
			l.enter(c, "Reestablishing")
			l.leave()
			lost <- struct{}{}
		})
		c.OnReestablished(func(c *Connection, _ int) {
			l.enter(c, "Reestablished")
			l.leave()
			reest <- struct{}{}
		})
		l.receiveAll(c, nil)
		for range 2 {
			s := <-accepted
			l.sendAsync(c, "m")
			s.Abort()
			<-lost
			<-reest
		}
		s := <-accepted
		if i%4 >= 2 { // during the backoff
			s.Abort()
			<-lost
		}
		if i%2 == 0 {
			require.NoError(t, c.Close(), name)
		} else {
			c.Abort()
		}
		events := l.check(t, name, c, nil)
		if i%2 == 0 {
			require.Equal(t, "Closed", l.term, "%s: %v", name, events)
		} else {
			require.Equal(t, "ConnectionError", l.term, "%s: %v", name, events)
		}
		// Reestablishing and Reestablished alternate
		var life []string
		for _, ev := range events {
			if strings.HasPrefix(ev, "Reestablish") || ev == "Ready" {
				life = append(life, ev)
			}
		}
		want := []string{"Ready", "Reestablishing", "Reestablished", "Reestablishing", "Reestablished"}
		if i%4 >= 2 {
			want = append(want, "Reestablishing")
		}
		require.Equal(t, want, life, "%s: %v", name, events)
		steps := stateSteps(tl.of(c.ID()))
		wantSteps := []string{"Establishing->Established Ready",
			"Established->Establishing ", "Establishing->Established Reestablished",
			"Established->Establishing ", "Establishing->Established Reestablished"}
		switch {
		case i%4 >= 2:
			wantSteps = append(wantSteps, "Established->Establishing ", "Establishing->Closed "+l.term)
		case l.term == "Closed":
			wantSteps = append(wantSteps, "Established->Closing ", "Closing->Closed Closed")
		default:
			wantSteps = append(wantSteps, "Established->Closed ConnectionError")
		}
		require.Equal(t, wantSteps, steps, "%s: %v", name, events)
		s.Abort()
	}
}
