package taps

import (
	"bytes"
	"io"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// helloFramer sends "HELLO" at Start and makes the connection Ready only
// when the peer's "HELLO" has arrived (a framer with its own handshake).
// After the handshake it frames like the length-prefix framer below it.
type helloFramer struct {
	inner *framers.LengthPrefix
	done  bool
}

func (f *helloFramer) Clone() framers.Framer        { return &helloFramer{inner: framers.NewLengthPrefix()} }
func (f *helloFramer) Start(inst *framers.Instance) { inst.Send([]byte("HELLO")) }
func (f *helloFramer) Stop(inst *framers.Instance)  {}
func (f *helloFramer) NewSentMessage(inst *framers.Instance, data []byte, meta framers.Metadata, eom bool) {
	f.inner.NewSentMessage(inst, data, meta, eom)
}
func (f *helloFramer) HandleReceivedData(inst *framers.Instance) {
	if !f.done {
		b, ok := inst.Parse(5, 5)
		if !ok {
			return
		}
		if string(b) != "HELLO" {
			inst.FailConnection(framers.ErrDeframingFailed)
			return
		}
		inst.AdvanceReceiveCursor(5)
		f.done = true
		inst.MakeConnectionReady()
	}
	f.inner.HandleReceivedData(inst)
}

func TestFramerDelaysReadyUntilItsHandshake(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	type result struct {
		c   *Connection
		err error
	}
	done := make(chan result, 1)
	go func() {
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
		pre.AddFramer(&helloFramer{inner: framers.NewLengthPrefix()})
		c, err := pre.Initiate(testCtx(t))
		done <- result{c, err}
	}()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	hello := make([]byte, 5)
	_, err = io.ReadFull(peer, hello)
	require.NoError(t, err)
	require.Equal(t, "HELLO", string(hello), "the framer's Start sends before Ready")
	select {
	case <-done:
		t.Fatal("Ready before the framer's handshake completed")
	default:
	}
	_, err = peer.Write(append([]byte("HELLO"), frame("after handshake")...))
	require.NoError(t, err)
	res := <-done
	require.NoError(t, res.err)
	m, err := res.c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "after handshake", string(m.Data))
	res.c.Abort()
	<-res.c.Done()
}

func TestFramerFailsEstablishment(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	errs := make(chan error, 1)
	go func() {
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
		pre.AddFramer(&helloFramer{inner: framers.NewLengthPrefix()})
		_, err := pre.Initiate(testCtx(t))
		errs <- err
	}()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	_, err = peer.Write([]byte("WRONG"))
	require.NoError(t, err)
	err = <-errs
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, framers.ErrDeframingFailed)
}

func TestPartialSendsFormOneMessage(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	ctx := testCtx(t)
	mc := NewMessageContext()
	require.NoError(t, c.SendPartial(ctx, []byte("one "), mc, false))
	require.NoError(t, c.SendPartial(ctx, []byte("two "), mc, false))
	other := make(chan error, 1)
	// another message waits until the partial one ends: a byte stream
	// cannot interleave them
	c.SendAsync([]byte("other"), nil, func(_ *Connection, err error) { other <- err })
	require.NoError(t, c.SendPartial(ctx, []byte("three"), mc, true))
	require.NoError(t, <-other)
	var got []string
	for i := 0; i < 2; i++ {
		m, err := readFrame(peer)
		require.NoError(t, err)
		got = append(got, m)
	}
	require.Equal(t, []string{"one two three", "other"}, got)
	var se *SendError
	require.ErrorAs(t, c.SendPartial(ctx, []byte("x"), nil, false), &se, "a partial send needs a MessageContext")
	c.Abort()
	<-c.Done()
}

// TestPartialAsyncSendsFormOneMessage: SendPartialAsync (the seed's send
// with a sent_handler and end_of_message False) makes one Message of its
// parts, each with its own Sent in order, and another Message sent
// meanwhile waits behind the open one.
func TestPartialAsyncSendsFormOneMessage(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	defer func() { c.Abort(); <-c.Done() }()
	events := make(chan string, 8)
	sent := func(name string) func(*Connection, error) {
		return func(_ *Connection, err error) {
			if err != nil {
				name += ": " + err.Error()
			}
			events <- name
		}
	}
	mc := NewMessageContext()
	c.SendPartialAsync([]byte("one "), mc, false, sent("one"))
	c.SendAsync([]byte("other"), nil, sent("other"))
	c.SendPartialAsync([]byte("two "), mc, false, sent("two"))
	c.SendPartialAsync([]byte("three"), mc, true, sent("three"))
	var got []string
	for range 2 {
		m, err := readFrame(peer)
		require.NoError(t, err)
		got = append(got, m)
	}
	require.Equal(t, []string{"one two three", "other"}, got)
	var order []string
	for range 4 {
		order = append(order, <-events)
	}
	require.Equal(t, []string{"one", "two", "three", "other"}, order, "each part's Sent, in the order written")

	c.SendPartialAsync([]byte("x"), nil, false, sent("no context"))
	require.Contains(t, <-events, "a partial send needs a MessageContext")
}

func TestMessageSplitOverManyReads(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	body := bytes.Repeat([]byte("abcdefgh"), 64<<10) // 512 KiB
	wire := frame(string(body))
	go func() {
		for i := 0; i < len(wire); i += 1000 {
			if _, err := peer.Write(wire[i:min(i+1000, len(wire))]); err != nil {
				return
			}
		}
	}()
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	require.Equal(t, body, m.Data)
	c.Abort()
	<-c.Done()
}

// starttlsLike answers the peer's "HELLO" handshake, then prepends a
// length-prefix framer above itself and steps aside (StartPassthrough), as
// STARTTLS-like protocols do.
type starttlsLike struct{}

func (starttlsLike) Start(inst *framers.Instance) { inst.Send([]byte("HELLO")) }
func (starttlsLike) Stop(*framers.Instance)       {}
func (starttlsLike) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, _ bool) {
	inst.Send(data)
}
func (starttlsLike) HandleReceivedData(inst *framers.Instance) {
	b, ok := inst.Parse(5, 5)
	if !ok {
		return
	}
	if string(b) != "HELLO" {
		inst.FailConnection(framers.ErrDeframingFailed)
		return
	}
	inst.AdvanceReceiveCursor(5)
	inst.PrependFramer(framers.NewLengthPrefix())
	inst.StartPassthrough()
	inst.MakeConnectionReady()
}

func TestPrependFramerAfterHandshake(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	done := make(chan *Connection, 1)
	go func() {
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
		pre.AddFramer(starttlsLike{})
		c, err := pre.Initiate(testCtx(t))
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	hello := make([]byte, 5)
	_, err = io.ReadFull(peer, hello)
	require.NoError(t, err)
	// the handshake answer and the first framed message in one write: the
	// message must already go through the prepended framer
	_, err = peer.Write(append([]byte("HELLO"), frame("framed by the prepended framer", "second")...))
	require.NoError(t, err)
	c := <-done
	require.NotNil(t, c)
	for _, want := range []string{"framed by the prepended framer", "second"} {
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, want, string(m.Data))
	}
	require.NoError(t, c.Send(testCtx(t), []byte("reply"), nil))
	got, err := readFrame(peer)
	require.NoError(t, err)
	require.Equal(t, "reply", got, "sends are framed by the prepended framer too")
	c.Abort()
	<-c.Done()
}

func TestFramerFailConnectionTriesTheNextCandidate(t *testing.T) {
	bad, rBad := rawListener(t)
	good, rGood := rawListener(t)
	peer := func(ln net.Listener, answer string) {
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			hello := make([]byte, 5)
			if _, err := io.ReadFull(c, hello); err != nil {
				return
			}
			_, _ = c.Write([]byte(answer))
			_, _ = io.Copy(io.Discard, c)
		}()
	}
	peer(bad, "WRONG")  // connects fine, then fails the framer's handshake
	peer(good, "HELLO") // the next candidate
	var events []string
	var mu sync.Mutex
	tsys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "candidate" {
			mu.Lock()
			events = append(events, r.Event+" "+r.Remote)
			mu.Unlock()
		}
	}))
	pre := NewPreconnection(WithSystem(tsys), WithRemoteEndpoint(rBad, rGood))
	pre.AddFramer(&helloFramer{inner: framers.NewLengthPrefix()})
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err, "FailConnection before Ready makes the next candidate be tried")
	require.Equal(t, rGood.String(), c.GetProperties().Remote.String())
	c.Abort()
	<-c.Done()
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, events, "FramerFailed "+rBad.String())
}

func TestFramerChainOrder(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	// added first: length prefix; added last: lines. The last added runs
	// first on send (lines, then length prefix) and last on receive.
	c := initiateTo(t, sys, r, framers.NewLengthPrefix(), framers.NewLines())
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil))
	got, err := readFrame(peer)
	require.NoError(t, err)
	require.Equal(t, "hello\n", got, "on the wire: length prefix around the line")
	_, err = peer.Write(frame("first\nsecond\n"))
	require.NoError(t, err)
	for _, want := range []string{"first", "second"} {
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, want, string(m.Data))
	}
	c.Abort()
	<-c.Done()
}

func TestFramerMetadataTravelsInTheMessageContext(t *testing.T) {
	sys := newTestSystem(t)
	fh, err := framers.NewFixedHeader(4, 2, 2) // 2 bytes of type, then a 2-byte length
	require.NoError(t, err)
	ln := listenLoopback(t, sys, fh)
	echo := make(chan *Message, 1)
	go func() {
		s, err := ln.Accept(testCtx(t))
		if err != nil {
			return
		}
		m, err := s.Receive(testCtx(t))
		if err == nil {
			echo <- m
		}
	}()
	fc, err := framers.NewFixedHeader(4, 2, 2)
	require.NoError(t, err)
	c := dial(t, sys, ln, fc)
	mc := NewMessageContext().SetFramerMetadata(fc, framers.HeaderMetadataKey, []byte{0xAB, 0xCD, 0, 0})
	require.NoError(t, c.Send(testCtx(t), []byte("typed"), mc))
	m := <-echo
	require.Equal(t, "typed", string(m.Data))
	hdr, ok := m.Context.FramerMetadata(fh)[framers.HeaderMetadataKey].([]byte)
	require.True(t, ok, "the receiving framer's metadata is in the message's context")
	require.Equal(t, []byte{0xAB, 0xCD}, hdr[:2])
	c.Abort()
	<-c.Done()
}

// mixedSizes are message sizes around the direct-read threshold and the
// read chunk, so that reads into the framer's buffer, pooled reads and
// messages spanning both all happen.
var mixedSizes = []int{1, 70 << 10, 5, 1 << 20, 20 << 10, 300 << 10, 16<<10 + 3, 0, 256 << 10, 33, 600 << 10, 64 << 10}

func mixedBodies() [][]byte {
	out := make([][]byte, len(mixedSizes))
	for i, n := range mixedSizes {
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(i*31 + k*7 + k>>9)
		}
		out[i] = b
	}
	return out
}

// TestLargeMessagesReadIntoTheFramersBuffer: messages of mixed sizes from a
// raw peer, written in uneven pieces, arrive whole and intact, whether the
// receiver reads for itself (blocking Receive) or the reader goroutine
// reads (ReceiveAsync).
func TestLargeMessagesReadIntoTheFramersBuffer(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "Receive", true: "ReceiveAsync"}[async], func(t *testing.T) {
			sys := newTestSystem(t)
			c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
			bodies := mixedBodies()
			var wire []byte
			for _, b := range bodies {
				wire = append(wire, frame(string(b))...)
			}
			go func() {
				for i, step := 0, 7000; i < len(wire); i, step = i+step, step*3%(200<<10)+1 {
					if _, err := peer.Write(wire[i:min(i+step, len(wire))]); err != nil {
						return
					}
				}
			}()
			ctx := testCtx(t)
			var kept []*Message
			for i, want := range bodies {
				var (
					m   *Message
					err error
				)
				if async {
					got := make(chan *Message, 1)
					c.ReceiveAsync(func(_ *Connection, m *Message, err error) {
						require.NoError(t, err)
						got <- m
					})
					select {
					case m = <-got:
					case <-ctx.Done():
						t.Fatalf("message %d: %v", i, ctx.Err())
					}
				} else {
					m, err = c.Receive(ctx)
					require.NoError(t, err, "message %d", i)
				}
				require.True(t, m.EndOfMessage)
				require.True(t, bytes.Equal(want, m.Data), "message %d (%d bytes) intact", i, len(want))
				// every other message is handed back, and its buffer may
				// take a later one; the others are kept, and must stay intact
				if i%2 == 0 {
					m.Release()
					require.Nil(t, m.Data)
				} else {
					kept = append(kept, m)
				}
			}
			for _, m := range kept {
				i := slices.IndexFunc(bodies, func(b []byte) bool { return len(b) == len(m.Data) })
				require.True(t, bytes.Equal(bodies[i], m.Data), "kept message of %d bytes intact after later receives", len(m.Data))
			}
			c.Abort()
			<-c.Done()
		})
	}
}

// TestReleasedBufferTakesTheNextLargeMessage: a large message's buffer
// handed back with Release is the one the next large message is read into;
// a message that is not released keeps its bytes.
func TestReleasedBufferTakesTheNextLargeMessage(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	ctx := testCtx(t)
	body := func(seed byte) []byte {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = seed + byte(i%251)
		}
		return b
	}
	recv := func(seed byte) *Message {
		t.Helper()
		want := body(seed)
		go func() { _, _ = peer.Write(frame(string(want))) }()
		m, err := c.Receive(ctx)
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, m.Data), "message %d intact", seed)
		return m
	}
	m0 := recv(0)
	require.NotNil(t, m0.backing, "a 1 MiB message is read into a buffer of its own")
	first := &m0.backing[0]
	m0.Release()
	require.Nil(t, m0.Data)
	m0.Release() // a second Release does nothing
	m1 := recv(1)
	require.NotNil(t, m1.backing)
	require.Same(t, first, &m1.backing[0], "the released buffer took the next message")
	m2 := recv(2) // m1 kept: m2 needs a buffer of its own
	require.NotSame(t, &m1.backing[0], &m2.backing[0])
	require.True(t, bytes.Equal(body(1), m1.Data), "the kept message is intact")
	m2.Release()
	c.Abort()
	<-c.Done()
	m1.Release() // after the connection ended: dropped, no panic
	require.Nil(t, m1.Data)
}

// TestLargeMessagesOverTLS: the same echoed over TLS, where the reader
// reads through crypto/tls into the framer's buffer (QUIC:
// TestQUICMessagesOfMixedSizesArriveIntactAndInOrder).
func TestLargeMessagesOverTLS(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	tp := NewTransportProperties()
	require.NoError(t, tp.Prohibit(Multistreaming))
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "tls", c.GetProperties().Stack)
	ctx := testCtx(t)
	for i, b := range mixedBodies() {
		require.NoError(t, c.Send(ctx, b, nil))
		m, err := c.Receive(ctx)
		require.NoError(t, err, "message %d", i)
		require.True(t, bytes.Equal(b, m.Data), "message %d (%d bytes) echoed intact", i, len(b))
	}
	c.Abort()
	<-c.Done()
}

// recvMsgMaxLen and sendMsgMaxLen (RFC 9622 §8.1.11: the largest Message
// that can be received or sent) are bounded by the framer's largest
// message: over TCP alone they would read unlimited, though a message
// above the framer's maximum fails.
func TestMsgMaxLenBoundedByTheFramer(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c := dial(t, sys, ln, framers.NewLengthPrefix(framers.WithMaxMessageSize(100)))
	p := c.GetProperties()
	for _, prop := range []Property{SendMsgMaxLen, RecvMsgMaxLen} {
		n, ok := p.Get(prop)
		require.True(t, ok, prop)
		require.Equal(t, int64(100), n, prop)
	}
	err := c.Send(testCtx(t), make([]byte, 101), nil)
	require.Error(t, err, "a message above sendMsgMaxLen fails")
	require.NoError(t, c.Send(testCtx(t), make([]byte, 100), nil))
}

// TestReleasedMessageIsReusedForTheNext: a Message handed back with
// Release is the one the connection's next Receive returns, emptied of the
// last one's context; a Message that is kept is never reused, and Release
// of a Message the application made itself does nothing.
func TestReleasedMessageIsReusedForTheNext(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	ctx := testCtx(t)
	_, err := peer.Write(frame("one", "two", "three", "four"))
	require.NoError(t, err)
	recv := func(want string) *Message {
		t.Helper()
		m, err := c.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(m.Data))
		return m
	}
	m1 := recv("one")
	m1.Context.setECN(2) // a received flag the next message must not inherit
	m1.Release()
	m2 := recv("two")
	require.Same(t, m1, m2, "the released Message took the next one")
	_, hasECN := m2.Context.ECN()
	require.False(t, hasECN, "its context was emptied")
	m3 := recv("three") // m2 kept
	require.NotSame(t, m2, m3)
	require.Equal(t, "two", string(m2.Data), "the kept Message is intact")
	m3.Release()
	m3.Release() // a second Release does nothing: m3 is not handed out twice
	m4 := recv("four")
	require.Same(t, m3, m4)
	_, err = peer.Write(frame("five"))
	require.NoError(t, err)
	m5 := recv("five")
	require.NotSame(t, m4, m5, "released once, reused once")
	own := &Message{Data: []byte("mine")}
	own.Release()
	require.Nil(t, own.Data)
}
