package taps

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// hookFramer is a user framer whose callbacks can be replaced one by one;
// the rest behave as the length-prefix framer it wraps (a fresh one per
// connection, through Clone).
type hookFramer struct {
	lp       *framers.LengthPrefix
	start    func(inst *framers.Instance)
	stop     func(inst *framers.Instance)
	send     func(inst *framers.Instance, data []byte, meta framers.Metadata, eom bool)
	recv     func(inst *framers.Instance)
	clone    func()
	check    func(data []byte) error
	maxBuf   func() int
	instance int64         // how many Clones came before this one
	clones   *atomic.Int64 // the Clones of this framer and its copies (concurrent: one per connection)
}

func newHookFramer() *hookFramer {
	return &hookFramer{lp: framers.NewLengthPrefix(), clones: new(atomic.Int64)}
}

// newAckFramer delivers each input as a message after sending "ack:"
// and the input (from HandleReceivedData).
func newAckFramer() *hookFramer {
	h := newHookFramer()
	h.recv = func(inst *framers.Instance) {
		b, ok := inst.Parse(1, -1)
		if !ok {
			return
		}
		inst.Send([]byte("ack:" + string(b)))
		inst.DeliverAndAdvanceReceiveCursor(nil, len(b), true)
	}
	return h
}

func (h *hookFramer) Clone() framers.Framer {
	if h.clone != nil {
		h.clone()
	}
	c := *h
	c.lp = h.lp.Clone().(*framers.LengthPrefix)
	c.instance = h.clones.Add(1)
	return &c
}

func (h *hookFramer) CheckMessage(data []byte) error {
	if h.check != nil {
		return h.check(data)
	}
	return h.lp.CheckMessage(data)
}

func (h *hookFramer) MaxBuffered() int {
	if h.maxBuf != nil {
		return h.maxBuf()
	}
	return h.lp.MaxBuffered()
}

func (h *hookFramer) Start(inst *framers.Instance) {
	if h.start != nil {
		h.start(inst)
		return
	}
	h.lp.Start(inst)
}

func (h *hookFramer) Stop(inst *framers.Instance) {
	if h.stop != nil {
		h.stop(inst)
		return
	}
	h.lp.Stop(inst)
}

func (h *hookFramer) NewSentMessage(inst *framers.Instance, data []byte, meta framers.Metadata, eom bool) {
	if h.send != nil {
		h.send(inst, data, meta, eom)
		return
	}
	h.lp.NewSentMessage(inst, data, meta, eom)
}

func (h *hookFramer) HandleReceivedData(inst *framers.Instance) {
	if h.recv != nil {
		h.recv(inst)
		return
	}
	h.lp.HandleReceivedData(inst)
}

var errHuntBug = errors.New("hunt framer bug")

// A panic in any callback of a user framer is contained: establishment,
// Send, Receive and Close end with the documented typed error wrapping a
// *PanicError, and nothing waits for its context.
func TestFramersHuntPanicInEachCallback(t *testing.T) {
	boom := func(*framers.Instance) { panic(errHuntBug) }
	for _, tc := range []struct {
		name string
		set  func(h *hookFramer)
		// during: "establish" (Initiate fails), "send", "receive", "close"
		during string
	}{
		{"Start", func(h *hookFramer) { h.start = boom }, "establish"},
		{"Clone", func(h *hookFramer) { h.clone = func() { panic(errHuntBug) } }, "establish"},
		{"MaxBuffered", func(h *hookFramer) { h.maxBuf = func() int { panic(errHuntBug) } }, "establish"},
		{"NewSentMessage", func(h *hookFramer) {
			h.send = func(*framers.Instance, []byte, framers.Metadata, bool) { panic(errHuntBug) }
		}, "send"},
		{"CheckMessage", func(h *hookFramer) { h.check = func([]byte) error { panic(errHuntBug) } }, "send"},
		{"HandleReceivedData", func(h *hookFramer) { h.recv = boom }, "receive"},
		{"Stop", func(h *hookFramer) { h.stop = boom }, "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ln, r := rawListener(t)
			go func() {
				for {
					p, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { p.Close() })
					if tc.during == "receive" {
						_, _ = p.Write(frame("hello"))
					}
				}
			}()
			h := newHookFramer()
			tc.set(h)
			ctx := testCtx(t)
			pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
			pre.AddFramer(h)
			c, err := pre.Initiate(ctx)
			var pe *PanicError
			if tc.during == "establish" {
				var ee *EstablishmentError
				require.ErrorAs(t, err, &ee)
				require.ErrorAs(t, err, &pe)
				require.ErrorIs(t, err, errHuntBug)
				return
			}
			require.NoError(t, err)
			switch tc.during {
			case "send":
				err = c.Send(ctx, []byte("x"), nil)
				var se *SendError
				require.ErrorAs(t, err, &se)
				require.ErrorAs(t, err, &pe)
			case "receive":
				_, err = c.Receive(ctx)
				var re *ReceiveError
				require.ErrorAs(t, err, &re)
				require.ErrorAs(t, err, &pe)
			case "close":
				require.NoError(t, c.Close())
			}
			awaitDone(t, c, "the connection")
			var ce *ConnectionError
			require.ErrorAs(t, c.Err(), &ce)
			require.ErrorAs(t, c.Err(), &pe)
			require.ErrorIs(t, c.Err(), errHuntBug)
			_, err = c.Receive(context.Background())
			require.Error(t, err, "a receive after the end returns")
		})
	}
}

// A framer that fails the connection (FailConnection) from a callback after
// Ready ends it with a ConnectionError wrapping the framer's error, and the
// Send, Receive or Close that ran into it returns.
func TestFramersHuntFailConnectionFromEachCallback(t *testing.T) {
	fail := func(inst *framers.Instance) { inst.FailConnection(errHuntBug) }
	for _, tc := range []struct {
		name   string
		set    func(h *hookFramer)
		during string
	}{
		{"NewSentMessage", func(h *hookFramer) {
			h.send = func(inst *framers.Instance, _ []byte, _ framers.Metadata, _ bool) { fail(inst) }
		}, "send"},
		{"HandleReceivedData", func(h *hookFramer) { h.recv = fail }, "receive"},
		{"Stop", func(h *hookFramer) { h.stop = fail }, "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			h := newHookFramer()
			tc.set(h)
			c, peer := rawPeer(t, sys, h)
			ctx := testCtx(t)
			switch tc.during {
			case "send":
				err := c.Send(ctx, []byte("x"), nil)
				var se *SendError
				require.ErrorAs(t, err, &se)
				require.ErrorIs(t, err, errHuntBug)
			case "receive":
				_, err := peer.Write(frame("x"))
				require.NoError(t, err)
				_, err = c.Receive(ctx)
				var re *ReceiveError
				require.ErrorAs(t, err, &re)
				require.ErrorIs(t, err, errHuntBug)
			case "close":
				require.NoError(t, c.Close())
			}
			awaitDone(t, c, "the connection")
			var ce *ConnectionError
			require.ErrorAs(t, c.Err(), &ce)
			require.ErrorIs(t, c.Err(), errHuntBug)
		})
	}
}

// A user framer may deliver several messages per input or none (holding
// bytes back until more come); one that waits for more bytes than the peer
// ever sends ends with a ReceiveError (ErrTruncated) at the peer's FIN.
func TestFramersHuntUserFramerDeliveryShapes(t *testing.T) {
	t.Run("several per input", func(t *testing.T) {
		sys := newTestSystem(t)
		h := newHookFramer()
		h.recv = func(inst *framers.Instance) {
			for {
				if _, ok := inst.Parse(1, 1); !ok {
					return
				}
				inst.DeliverAndAdvanceReceiveCursor(nil, 1, true)
			}
		}
		c, peer := rawPeer(t, sys, h)
		_, err := peer.Write([]byte("abc"))
		require.NoError(t, err)
		for _, want := range []string{"a", "b", "c"} {
			m, err := c.Receive(testCtx(t))
			require.NoError(t, err)
			require.Equal(t, want, string(m.Data))
			require.True(t, m.EndOfMessage)
		}
		c.Abort()
		<-c.Done()
	})
	t.Run("held back", func(t *testing.T) {
		sys := newTestSystem(t)
		h := newHookFramer()
		h.recv = func(inst *framers.Instance) {
			if _, ok := inst.Parse(6, 6); ok {
				inst.DeliverAndAdvanceReceiveCursor(nil, 6, true)
			}
		}
		c, peer := rawPeer(t, sys, h)
		got := make(chan *Message, 1)
		go func() {
			m, err := c.Receive(testCtx(t))
			if err == nil {
				got <- m
			}
			close(got)
		}()
		for _, b := range []string{"ab", "cd", "efgh"} {
			_, err := peer.Write([]byte(b))
			require.NoError(t, err)
		}
		m := <-got
		require.NotNil(t, m)
		require.Equal(t, "abcdef", string(m.Data))
		c.Abort()
		<-c.Done()
	})
	t.Run("more than will come", func(t *testing.T) {
		sys := newTestSystem(t)
		h := newHookFramer()
		h.recv = func(inst *framers.Instance) {
			if _, ok := inst.Parse(100, 100); ok {
				inst.DeliverAndAdvanceReceiveCursor(nil, 100, true)
			}
		}
		c, peer, _, errc := receiveShort(t, sys, h)
		require.NoError(t, peer.(*net.TCPConn).CloseWrite())
		err := <-errc
		var re *ReceiveError
		require.ErrorAs(t, err, &re)
		require.ErrorIs(t, err, framers.ErrTruncated)
		require.Equal(t, ReasonDeframingFailed, re.Reason)
		c.Abort()
		<-c.Done()
	})
	t.Run("local close while it waits", func(t *testing.T) {
		sys := newTestSystem(t)
		h := newHookFramer()
		h.recv = func(inst *framers.Instance) { _, _ = inst.Parse(100, 100) }
		c, peer, ctx, errc := receiveShort(t, sys, h)
		go func() {
			_, _ = io.Copy(io.Discard, peer)
			peer.Close()
		}()
		require.NoError(t, c.Close())
		select {
		case err := <-errc:
			require.Error(t, err)
		case <-ctx.Done():
			t.Fatal("Receive hangs after Close")
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("Close hangs")
		}
	})
}

// receiveShort is a connection to a raw TCP peer, with framer h, whose
// Receive (on ctx) runs and ends on errc, and to which the peer wrote
// "only ten..".
func receiveShort(t *testing.T, sys *System, h framers.Framer) (c *Connection, peer net.Conn, ctx context.Context, errc <-chan error) {
	t.Helper()
	c, peer = rawPeer(t, sys, h)
	ctx = testCtx(t)
	ch := make(chan error, 1)
	go func() {
		_, err := c.Receive(ctx)
		ch <- err
	}()
	_, err := peer.Write([]byte("only ten.."))
	require.NoError(t, err)
	return c, peer, ctx, ch
}

// Oversized and malformed input fails the connection, bounded: a length
// prefix claiming 4 GiB, a line longer than the delimiter's maximum and a
// user framer asking for 4 GiB all give a ReceiveError and a
// ConnectionError with ReasonMessageTooLarge.
func TestFramersHuntOversizedInput(t *testing.T) {
	huge := newHookFramer()
	huge.recv = func(inst *framers.Instance) { _, _ = inst.Parse(1<<32, -1) }
	long := bytes.Repeat([]byte("x"), 100)
	for _, tc := range []struct {
		name string
		f    framers.Framer
		wire []byte
	}{
		{"length prefix 4 GiB", framers.NewLengthPrefix(), []byte{0xff, 0xff, 0xff, 0xff, 'a'}},
		{"delimiter line too long", framers.NewLines(framers.WithMaxMessageSize(16)), long},
		{"delimiter line too long, then newline", framers.NewLines(framers.WithMaxMessageSize(16)), append(long, '\n')},
		{"user framer wants 4 GiB", huge, []byte("abc")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			c, peer := rawPeer(t, sys, tc.f)
			_, err := peer.Write(tc.wire)
			require.NoError(t, err)
			ctx := testCtx(t)
			_, err = c.Receive(ctx)
			var re *ReceiveError
			require.ErrorAs(t, err, &re)
			require.Equal(t, ReasonMessageTooLarge, re.Reason, "%v", err)
			require.ErrorIs(t, err, framers.ErrMessageTooLarge)
			awaitDone(t, c, "the connection")
			var ce *ConnectionError
			require.ErrorAs(t, c.Err(), &ce)
			require.Equal(t, ReasonMessageTooLarge, ce.Reason)
		})
	}
}

// Wire shapes: a zero-length message, a message split into one-byte TCP
// segments, and many messages in one segment all arrive whole, in order.
func TestFramersHuntWireShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func() framers.Framer
		enc  func(msgs ...string) []byte
	}{
		{"length prefix", func() framers.Framer { return framers.NewLengthPrefix() }, frame},
		{"lines", func() framers.Framer { return framers.NewLines() }, func(msgs ...string) []byte {
			return []byte(strings.Join(msgs, "\n") + "\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			c, peer := rawPeer(t, sys, tc.f())
			ctx := testCtx(t)
			// one byte per segment: Go's TCP sockets have TCP_NODELAY set
			for _, b := range tc.enc("split", "") {
				_, err := peer.Write([]byte{b})
				require.NoError(t, err)
			}
			many := make([]string, 500)
			for i := range many {
				many[i] = strconv.Itoa(i)
			}
			_, err := peer.Write(tc.enc(many...))
			require.NoError(t, err)
			for _, want := range append([]string{"split", ""}, many...) {
				m, err := c.Receive(ctx)
				require.NoError(t, err)
				require.Equal(t, want, string(m.Data))
				require.True(t, m.EndOfMessage)
			}
			c.Abort()
			<-c.Done()
		})
	}
}

// seqFramer numbers messages per framer instance: on send a 2-byte header
// (the instance's send count, the body length); on receive it attaches
// {"seq": the sender's count, "rseq": its own receive count}. It implements
// Cloner, so every connection must count from 1.
type seqFramer struct{ sent, recvd byte }

func (*seqFramer) Clone() framers.Framer        { return &seqFramer{} }
func (*seqFramer) Start(inst *framers.Instance) { inst.MakeConnectionReady() }
func (*seqFramer) Stop(inst *framers.Instance)  { inst.MakeConnectionClosed() }
func (f *seqFramer) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, _ bool) {
	f.sent++
	inst.Send(append([]byte{f.sent, byte(len(data))}, data...))
}
func (f *seqFramer) HandleReceivedData(inst *framers.Instance) {
	for {
		h, ok := inst.Parse(2, 2)
		if !ok {
			return
		}
		seq, n := h[0], int(h[1])
		if _, ok := inst.Parse(2+n, 0); !ok {
			return
		}
		f.recvd++
		inst.AdvanceReceiveCursor(2)
		inst.DeliverAndAdvanceReceiveCursor(framers.Metadata{"seq": seq, "rseq": f.recvd}, n, true)
	}
}

// Every connection accepted by a Listener and every Clone gets a framer
// instance of its own (Cloner): the counts start at 1 on each, on both the
// sending and the receiving side.
func TestFramersHuntListenerAndCloneGetOwnFramer(t *testing.T) {
	for _, stack := range []string{"tcp", "quic"} {
		t.Run(stack, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx := testCtx(t)
			lf, df := &seqFramer{}, &seqFramer{}
			srv := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
			var tp *TransportProperties
			var pki *testPKI
			if stack == "quic" {
				pki, tp = newTestPKI(t), quicOnly(t)
				srv = NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
					WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
			}
			srv.AddFramer(lf)
			ln, err := srv.Listen(ctx)
			require.NoError(t, err)
			t.Cleanup(ln.Stop)
			initiate := func() *Connection {
				if stack == "tcp" {
					return dial(t, sys, ln, df)
				}
				ap, _ := ln.LocalEndpoints()[0].Addr()
				pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
					WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(ap.Port())), WithResolver(loopbackOnly))
				pre.AddFramer(df)
				c, err := pre.Initiate(ctx)
				require.NoError(t, err)
				return c
			}
			check := func(c *Connection) {
				t.Helper()
				for i := byte(1); i <= 2; i++ {
					require.NoError(t, c.Send(ctx, []byte("m"), nil))
				}
				s, err := ln.Accept(ctx)
				require.NoError(t, err)
				for i := byte(1); i <= 2; i++ {
					m, err := s.Receive(ctx)
					require.NoError(t, err)
					md := m.Context.FramerMetadata(lf)
					require.Equal(t, framers.Metadata{"seq": i, "rseq": i}, md)
				}
				t.Cleanup(s.Abort) // not now: c would end, and could not be cloned
			}
			c1 := initiate()
			check(c1)
			c2 := initiate()
			check(c2)
			cl, err := c1.Clone(ctx)
			require.NoError(t, err)
			check(cl)
			for _, c := range []*Connection{c1, c2, cl} {
				c.Abort()
				<-c.Done()
			}
			require.Zero(t, lf.sent+lf.recvd+df.sent+df.recvd, "the framer values given to AddFramer are never used")
		})
	}
}

// tagFramer puts a one-byte tag (framer metadata "tag", a byte) before each
// message on send and attaches it on receive.
type tagFramer struct{}

func (*tagFramer) Start(inst *framers.Instance) { inst.MakeConnectionReady() }
func (*tagFramer) Stop(inst *framers.Instance)  { inst.MakeConnectionClosed() }
func (*tagFramer) NewSentMessage(inst *framers.Instance, data []byte, meta framers.Metadata, _ bool) {
	tag, _ := meta["tag"].(byte)
	inst.Send(append([]byte{tag}, data...))
}
func (*tagFramer) HandleReceivedData(inst *framers.Instance) {
	// the framer below delivers whole messages: each input is one
	b, ok := inst.Parse(1, -1)
	if !ok {
		return
	}
	tag := b[0]
	inst.AdvanceReceiveCursor(1)
	inst.DeliverAndAdvanceReceiveCursor(framers.Metadata{"tag": tag}, inst.Buffered(), true)
}

// Two stacked framers keep their metadata apart, on send and on receive:
// the tag framer (added last) runs first on send, inside the fixed header.
func TestFramersHuntStackedMetadata(t *testing.T) {
	sys := newTestSystem(t)
	lfh, err := framers.NewFixedHeader(4, 2, 2)
	require.NoError(t, err)
	ltag := &tagFramer{}
	ln := listenLoopback(t, sys, lfh, ltag)
	dfh, err := framers.NewFixedHeader(4, 2, 2)
	require.NoError(t, err)
	dtag := &tagFramer{}
	c := dial(t, sys, ln, dfh, dtag)
	ctx := testCtx(t)
	for i := byte(1); i <= 3; i++ {
		mc := NewMessageContext().
			SetFramerMetadata(dfh, framers.HeaderMetadataKey, []byte{0xA0, i}).
			SetFramerMetadata(dtag, "tag", 0x10+i)
		require.NoError(t, c.Send(ctx, []byte("body"), mc))
	}
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	for i := byte(1); i <= 3; i++ {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, "body", string(m.Data))
		require.Equal(t, framers.Metadata{"tag": 0x10 + i}, m.Context.FramerMetadata(ltag))
		hdr, _ := m.Context.FramerMetadata(lfh)[framers.HeaderMetadataKey].([]byte)
		require.Equal(t, []byte{0xA0, i, 0, 0}, hdr)
	}
	s.Abort()
	c.Abort()
	<-c.Done()
}

// Sends from several goroutines and a concurrent receiver on framed
// connections (an echo over a Listener): every message arrives whole, once.
func TestFramersHuntConcurrentSendReceive(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ctx := testCtx(t)
	echoServer(t, ln)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	const senders, each = 4, 100
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				msg := fmt.Sprintf("g%d-%d-%s", g, i, strings.Repeat("x", i*37))
				if err := c.Send(ctx, []byte(msg), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[string]bool{}
	for len(seen) < senders*each {
		m, err := c.Receive(ctx)
		require.NoError(t, err)
		require.True(t, m.EndOfMessage)
		require.False(t, seen[string(m.Data)], "delivered twice: %.20q", m.Data)
		seen[string(m.Data)] = true
	}
	wg.Wait()
	c.Abort()
	<-c.Done()
}

// On a datagram stack a framer frames each message on send and deframes
// each datagram on receive: both directions go through it.
func TestFramersHuntUDPFramerBothWays(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort())))
	pre.AddFramer(framers.NewLengthPrefix())
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	require.NoError(t, c.Send(ctx, []byte("hi"), nil))
	b, from := readDatagramFrom(t, pc)
	require.Equal(t, frame("hi"), b, "sent through the framer")
	_, err = pc.WriteToUDPAddrPort(frame("yo"), from)
	require.NoError(t, err)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "yo", string(m.Data), "received through the framer")
}

// A framer may send from HandleReceivedData (a handshake's second step, an
// acknowledgement): those bytes go out at once, not with the application's
// next Send.
func TestFramersHuntSendFromHandleReceivedData(t *testing.T) {
	sys := newTestSystem(t)
	h := newAckFramer()
	c, peer := rawPeer(t, sys, h)
	_, err := peer.Write([]byte("x"))
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "x", string(m.Data))
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	ack := make([]byte, 5)
	_, err = io.ReadFull(peer, ack)
	require.NoError(t, err, "the framer's reply never left")
	require.Equal(t, "ack:x", string(ack))
	c.Abort()
	<-c.Done()
}

// sizePanicFramer is a hookFramer whose MaxMessageSize (MaxMessageSizer)
// panics.
type sizePanicFramer struct{ *hookFramer }

func (f *sizePanicFramer) Clone() framers.Framer {
	return &sizePanicFramer{f.hookFramer.Clone().(*hookFramer)}
}

func (f *sizePanicFramer) MaxMessageSize() int { panic(errHuntBug) }

// TestFramersHuntPanicInMaxMessageSize: a panic in a user framer's
// MaxMessageSize, which gotaps calls on the sender's goroutine to check
// the parts of a Message sent in parts, is contained as a panic in
// CheckMessage is: the part fails with a SendError wrapping the
// *PanicError (the application's goroutine does not crash), the
// connection ends with a ConnectionError carrying it, and a later Send
// returns (nothing was left locked).
func TestFramersHuntPanicInMaxMessageSize(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	go func() {
		p, err := ln.Accept()
		if err == nil {
			t.Cleanup(func() { p.Close() })
		}
	}()
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	pre.AddFramer(&sizePanicFramer{newHookFramer()})
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	defer c.Abort()
	mc := NewMessageContext()
	err = c.SendPartial(ctx, []byte("ab"), mc, false)
	var se *SendError
	var pe *PanicError
	require.ErrorAs(t, err, &se)
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, errHuntBug)
	require.Error(t, c.SendPartial(ctx, []byte("cd"), mc, true), "the rest of the Message fails too")
	awaitDone(t, c, "the connection")
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce)
	require.ErrorAs(t, c.Err(), &pe)
	require.ErrorIs(t, c.Err(), errHuntBug)
	require.ErrorAs(t, c.Send(ctx, []byte("x"), NewMessageContext()), &se, "a Send after it returns")
}

// TestFramersHuntConcurrentInitiatesCloneTheFramer: one framer added to
// Preconnections that Initiate at once is cloned once per connection, by
// that connection (its framer actor), so that its Clones run
// concurrently: n connections make n Clones, and -race checks that
// hookFramer's Clone (its atomic counter) is safe so.
func TestFramersHuntConcurrentInitiatesCloneTheFramer(t *testing.T) {
	const n = 8
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	defer ln.Stop()
	r := loopbackRemote(listenerAddr(t, ln))
	h := newHookFramer()
	errs := make(chan error, n)
	for range n {
		go func() {
			pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
			pre.AddFramer(h)
			c, err := pre.Initiate(testCtx(t))
			if err == nil {
				c.Abort()
				<-c.Done()
			}
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	require.Equal(t, int64(n), h.clones.Load(), "one Clone per connection")
}

// overheadPanicFramer is a hookFramer whose MessageOverhead
// (MessageOverheader) panics.
type overheadPanicFramer struct{ *hookFramer }

func (f *overheadPanicFramer) Clone() framers.Framer {
	return &overheadPanicFramer{f.hookFramer.Clone().(*hookFramer)}
}

func (f *overheadPanicFramer) MessageOverhead() int { panic(errHuntBug) }

// TestFramersHuntPanicInSizeMethodsNamesTheMethod: a panic in a user
// framer's MaxMessageSize or MessageOverhead, which the connection calls
// to report sendMsgMaxLen and recvMsgMaxLen (GetProperties), on an
// accepted or an initiated connection, ends that connection with a
// ConnectionError carrying a *PanicError that names the framer method,
// as the other framer panics do; not "connection actor".
func TestFramersHuntPanicInSizeMethodsNamesTheMethod(t *testing.T) {
	for _, tc := range []struct {
		method string
		f      func() framers.Framer
	}{
		{"MaxMessageSize", func() framers.Framer { return &sizePanicFramer{newHookFramer()} }},
		{"MessageOverhead", func() framers.Framer { return &overheadPanicFramer{newHookFramer()} }},
	} {
		check := func(t *testing.T, c *Connection) {
			t.Helper()
			c.GetProperties()
			awaitDone(t, c, "the connection")
			var ce *ConnectionError
			var pe *PanicError
			require.ErrorAs(t, c.Err(), &ce)
			require.ErrorAs(t, c.Err(), &pe)
			require.ErrorIs(t, c.Err(), errHuntBug)
			require.Contains(t, pe.Where, tc.method, "the framer method, in %v", c.Err())
			require.Contains(t, pe.Where, "framer", c.Err().Error())
		}
		t.Run(tc.method+"/accepted", func(t *testing.T) {
			sys := newTestSystem(t)
			ln := listenLoopback(t, sys, tc.f())
			defer ln.Stop()
			peer, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			defer peer.Close()
			c, err := ln.Accept(testCtx(t))
			require.NoError(t, err)
			defer c.Abort()
			check(t, c)
		})
		t.Run(tc.method+"/initiated", func(t *testing.T) {
			sys := newTestSystem(t)
			ln, r := rawListener(t)
			c := initiateTo(t, sys, r, tc.f())
			defer c.Abort()
			peer, err := ln.Accept()
			require.NoError(t, err)
			defer peer.Close()
			check(t, c)
		})
	}
}

// markFramer is length-prefix framing that attaches metadata ("marked")
// only to the messages whose body's second byte is 'M'.
type markFramer struct{}

func (*markFramer) Start(inst *framers.Instance) { inst.MakeConnectionReady() }
func (*markFramer) Stop(inst *framers.Instance)  { inst.MakeConnectionClosed() }
func (*markFramer) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, _ bool) {
	inst.Send(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
	inst.Send(data)
}
func (*markFramer) HandleReceivedData(inst *framers.Instance) {
	hdr, ok := inst.Parse(4, 4)
	if !ok {
		return
	}
	n := int(binary.BigEndian.Uint32(hdr))
	b, ok := inst.Parse(4+n, -1)
	if !ok {
		return
	}
	var meta framers.Metadata
	if n > 1 && b[5] == 'M' {
		meta = framers.Metadata{"marked": true}
	}
	inst.AdvanceReceiveCursor(4)
	inst.DeliverAndAdvanceReceiveCursor(meta, n, true)
}

// TestFramersHuntLowerMetadataIsTheMessagesOwn: under stacked framers, a
// received Message carries the metadata the lower framer delivered with
// the bytes it was parsed from: none when that message had none, not the
// metadata of the last one that had some.
func TestFramersHuntLowerMetadataIsTheMessagesOwn(t *testing.T) {
	sys := newTestSystem(t)
	lower, upper := &markFramer{}, &tagFramer{}
	ln, r := rawListener(t)
	c := initiateTo(t, sys, r, lower, upper)
	defer c.Abort()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	_, err = peer.Write(frame("\x01Mone", "\x02two", "\x03Mthree"))
	require.NoError(t, err)
	for _, want := range []struct {
		data   string
		tag    byte
		marked bool
	}{{"Mone", 1, true}, {"two", 2, false}, {"Mthree", 3, true}} {
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, want.data, string(m.Data))
		require.Equal(t, framers.Metadata{"tag": want.tag}, m.Context.FramerMetadata(upper), want.data)
		if want.marked {
			require.Equal(t, framers.Metadata{"marked": true}, m.Context.FramerMetadata(lower), want.data)
		} else {
			require.Empty(t, m.Context.FramerMetadata(lower), "%s: the lower framer delivered it without metadata", want.data)
		}
	}
}

// TestFramersHuntStackedReceiveGetsItsMessage: under stacked framers, a
// blocking Receive whose message is on its way up the stack gets it. The
// framer below counted the bytes as parsed before the framer above had
// delivered them, and for that while nothing counted as on its way: the
// Receive took the read token again and blocked in a read for bytes that
// had come already, until its ctx ended (for ever under a ctx that cannot
// end), about one round in five.
func TestFramersHuntStackedReceiveGetsItsMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   func() []framers.Framer
		wire []byte
	}{
		{"tag over length prefix", func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix(), &tagFramer{}} },
			frame("\x01one")},
		{"length prefix over length prefix", func() []framers.Framer {
			return []framers.Framer{framers.NewLengthPrefix(), framers.NewLengthPrefix()}
		}, frame(string(frame("one")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			for round := range 20 {
				ln, r := rawListener(t)
				c := initiateTo(t, sys, r, tc.fs()...)
				peer, err := ln.Accept()
				require.NoError(t, err)
				_, err = peer.Write(tc.wire)
				require.NoError(t, err)
				got := make(chan *Message, 1)
				go func() {
					m, err := c.Receive(context.Background()) // a ctx that cannot end
					if err != nil {
						t.Errorf("round %d: %v", round, err)
					}
					got <- m
				}()
				select {
				case m := <-got:
					require.Equal(t, "one", string(m.Data), "round %d", round)
				case <-time.After(5 * time.Second):
					c.Abort() // ends the read the Receive is blocked in
					<-got
					t.Fatalf("round %d: the Receive waits for a message that came", round)
				}
				c.Abort()
				<-c.Done()
				peer.Close()
			}
		})
	}
}
