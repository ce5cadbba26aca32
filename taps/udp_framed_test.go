package taps

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Framers over UDP: each datagram is framed on its own. Every test runs
// on an initiated Connection and on one a Listener accepted, against a
// plain UDP peer (stacks.UDP) that sends the datagrams, each with its own
// ECN bits.

// framedUDPSide is one end of a framed UDP Connection under test: c, and
// send, which sends one datagram from the peer to c with ecn.
type framedUDPSide struct {
	c    *Connection
	send func(b []byte, ecn uint8)
	recv func() []byte // the next datagram the peer gets from c
}

// framedUDPSides runs fn on an initiated and on an accepted UDP
// Connection that use the framers fs (made anew for each).
func framedUDPSides(t *testing.T, fs func() []framers.Framer, fn func(t *testing.T, s framedUDPSide)) {
	t.Run("initiated", func(t *testing.T) { fn(t, framedUDPInitiated(t, fs())) })
	t.Run("accepted", func(t *testing.T) { fn(t, framedUDPAccepted(t, fs())) })
}

// peerReader reads the next datagram at the peer (at most 5 s).
func peerReader(t *testing.T, peer stacks.Transport) func() []byte {
	return func() []byte {
		t.Helper()
		buf := make([]byte, 70000)
		require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := peer.Read(buf)
		require.NoError(t, err)
		return buf[:n]
	}
}

// peerSender sends from a stacks UDP Transport, one datagram per call.
func peerSender(t *testing.T, peer stacks.Transport) func(b []byte, ecn uint8) {
	tw := peer.(stacks.TOSDatagrams)
	return func(b []byte, ecn uint8) {
		_, err := tw.WriteMsg(b, stacks.TOS(0, ecn))
		require.NoError(t, err)
	}
}

// framedUDPInitiated initiates a Connection with fs to a stacks UDP
// listener; the Connection's first Message (sent here) makes the peer.
func framedUDPInitiated(t *testing.T, fs []framers.Framer) framedUDPSide {
	t.Helper()
	sys := newTestSystem(t)
	sln, err := stacks.UDP().Listen(testCtx(t), stacks.Options{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sln.Close() })
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(sln.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort())))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	require.NoError(t, c.Send(testCtx(t), []byte("hi"), nil))
	accepted := make(chan stacks.Transport, 1)
	go func() {
		p, err := sln.Accept()
		if err == nil {
			accepted <- p
		}
		close(accepted)
	}()
	var peer stacks.Transport
	select {
	case peer = <-accepted:
		require.NotNil(t, peer, "the stacks listener ended")
	case <-time.After(5 * time.Second):
		t.Fatal("the Connection's first datagram did not arrive")
	}
	t.Cleanup(func() { _ = peer.Close() })
	recv := peerReader(t, peer)
	require.NotEmpty(t, recv(), "the Connection's first Message")
	return framedUDPSide{c: c, send: peerSender(t, peer), recv: recv}
}

// framedUDPAccepted listens with fs; a stacks UDP peer's first datagram
// (an empty frame, which the Connection receives as an empty Message
// and is taken here) makes the Connection.
func framedUDPAccepted(t *testing.T, fs []framers.Framer) framedUDPSide {
	t.Helper()
	first := []byte{}
	for range fs {
		first = frame(string(first))
	}
	return framedUDPAcceptedBy(t, fs, first)
}

// framedUDPAcceptedBy is framedUDPAccepted whose peer's first datagram is
// first, an empty Message framed as fs frame it.
func framedUDPAcceptedBy(t *testing.T, fs []framers.Framer, first []byte) framedUDPSide {
	t.Helper()
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	peer, err := stacks.UDP().Dial(testCtx(t), listenerAddr(t, ln), stacks.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	send := peerSender(t, peer)
	send(first, stacks.NotECT)
	c, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	m := mustReceive(t, c)
	require.Empty(t, m.Data)
	return framedUDPSide{c: c, send: send, recv: peerReader(t, peer)}
}

// receiveWithin is one Receive that waits at most 5 s (a Message that
// never comes fails the test rather than hanging it).
func receiveWithin(c *Connection, opts ...ReceiveOption) (*Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Receive(ctx, opts...)
}

func mustReceive(t *testing.T, c *Connection) *Message {
	t.Helper()
	m, err := receiveWithin(c)
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	return m
}

// requireCutFrame expects the ReceiveError of a cut frame.
func requireCutFrame(t *testing.T, c *Connection, what string) {
	t.Helper()
	m, err := receiveWithin(c)
	var re *ReceiveError
	require.ErrorAs(t, err, &re, "%s: got %v", what, m)
	require.Equal(t, ReasonDeframingFailed, re.Reason, "%s: %v", what, err)
	require.ErrorIs(t, err, framers.ErrTruncated, what)
}

func lengthPrefixOnly() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix()} }

// TestUDPFramedCutFrameIsAReceiveError: the frames of a datagram are each
// a Message; one cut at the datagram's end (its last frame incomplete, or
// a header announcing more bytes than the datagram holds) is a
// ReceiveError (DeframingFailed) for that Message, and the Connection
// goes on with the next datagrams.
func TestUDPFramedCutFrameIsAReceiveError(t *testing.T) {
	framedUDPSides(t, lengthPrefixOnly, func(t *testing.T, s framedUDPSide) {
		s.send(append(frame("a", "b"), frame("cut frame")[:6]...), stacks.NotECT)
		s.send([]byte{0, 0, 3, 232, 'x', 'y', 'z'}, stacks.NotECT) // announces 1000 bytes
		s.send(frame("c")[:2], stacks.NotECT)                      // half a header
		s.send(frame("d", "e"), stacks.NotECT)
		for _, want := range []string{"a", "b"} {
			require.Equal(t, want, string(mustReceive(t, s.c).Data))
		}
		requireCutFrame(t, s.c, "last frame cut")
		requireCutFrame(t, s.c, "header announces more than the datagram")
		requireCutFrame(t, s.c, "half a header")
		for _, want := range []string{"d", "e"} {
			require.Equal(t, want, string(mustReceive(t, s.c).Data))
		}
		require.Equal(t, StateEstablished, s.c.State())
		require.NoError(t, s.c.Send(testCtx(t), []byte("still"), nil))
	})
}

// newStreamingFramer is a length-prefix framer that delivers a body as its
// bytes arrive (DeliverAndAdvanceReceiveCursor with more than it has):
// the rest of the body is due from the bytes that follow.
func newStreamingFramer() *hookFramer {
	h := newHookFramer()
	h.recv = func(inst *framers.Instance) {
		hdr, ok := inst.Parse(4, 4)
		if !ok {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr))
		inst.AdvanceReceiveCursor(4)
		inst.DeliverAndAdvanceReceiveCursor(nil, n, true)
	}
	return h
}

// TestUDPFramedCutFrameNotCompletedByNextDatagram: framing restarts at
// every datagram, whatever the framer keeps between its calls: a message
// cut at a datagram's end is never completed by the next datagram's bytes,
// nor does what the framer had seen of it change how the next datagram is
// framed. A framer that delivers a body as it arrives (in parts) has the
// cut Message be a ReceiveError, none of its parts delivered (a datagram's
// Messages arrive whole or not at all); a line framer's unterminated
// rest is a ReceiveError and the next datagram's lines all arrive; under
// two framers, a frame of the upper one cut at the datagram's end is not
// joined to the next datagram's.
func TestUDPFramedCutFrameNotCompletedByNextDatagram(t *testing.T) {
	t.Run("streaming framer", func(t *testing.T) {
		framedUDPSides(t, func() []framers.Framer { return []framers.Framer{newStreamingFramer()} }, func(t *testing.T, s framedUDPSide) {
			s.send(append([]byte{0, 0, 0, 10}, "01234"...), stacks.NotECT)
			s.send(frame("next"), stacks.NotECT)
			requireCutFrame(t, s.c, "the rest of the body never came")
			require.Equal(t, "next", string(mustReceive(t, s.c).Data), "the next datagram is framed from its start")
		})
	})
	t.Run("lines", func(t *testing.T) {
		// the accepted side's first datagram is a length-prefix frame:
		// for lines, an empty line does
		fs := func() []framers.Framer { return []framers.Framer{framers.NewLines()} }
		for _, side := range []string{"initiated", "accepted"} {
			t.Run(side, func(t *testing.T) {
				var s framedUDPSide
				if side == "initiated" {
					s = framedUDPInitiated(t, fs())
				} else {
					s = framedLinesAccepted(t)
				}
				s.send([]byte("abc\nxyzw"), stacks.NotECT)
				s.send([]byte("a\nb\n"), stacks.NotECT)
				require.Equal(t, "abc", string(mustReceive(t, s.c).Data))
				requireCutFrame(t, s.c, "unterminated line")
				for _, want := range []string{"a", "b"} {
					require.Equal(t, want, string(mustReceive(t, s.c).Data), "the next datagram is framed from its start")
				}
			})
		}
	})
	t.Run("two framers", func(t *testing.T) {
		two := func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix(), framers.NewLengthPrefix()} }
		framedUDPSides(t, two, func(t *testing.T, s framedUDPSide) {
			s.send(frame(string(frame("inner")[:5])), stacks.NotECT) // the upper frame is cut
			s.send(frame(string(frame("x"))), stacks.NotECT)
			s.send(frame(string(frame("y", "z"))), stacks.NotECT)
			requireCutFrame(t, s.c, "upper frame cut")
			for _, want := range []string{"x", "y", "z"} {
				require.Equal(t, want, string(mustReceive(t, s.c).Data))
			}
		})
	})
}

// framedLinesAccepted is framedUDPAccepted for one line framer (its first
// datagram is an empty line).
func framedLinesAccepted(t *testing.T) framedUDPSide {
	t.Helper()
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLines())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	peer, err := stacks.UDP().Dial(testCtx(t), listenerAddr(t, ln), stacks.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	send := peerSender(t, peer)
	send([]byte("\n"), stacks.NotECT)
	c, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	require.Empty(t, mustReceive(t, c).Data)
	return framedUDPSide{c: c, send: send, recv: peerReader(t, peer)}
}

// TestUDPFramedReceivedECN: every Message of a framed datagram carries
// the ECN bits that datagram arrived with, as on an unframed Connection
// (TestReceivedECN), also under two framers.
func TestUDPFramedReceivedECN(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   func() []framers.Framer
		enc  func(msgs ...string) []byte
	}{
		{"one framer", lengthPrefixOnly, frame},
		{"two framers", func() []framers.Framer { return []framers.Framer{framers.NewLengthPrefix(), framers.NewLengthPrefix()} },
			func(msgs ...string) []byte { return frame(string(frame(msgs...))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			framedUDPSides(t, tc.fs, func(t *testing.T, s framedUDPSide) {
				ecns := []uint8{stacks.ECT0, stacks.ECT1, stacks.NotECT, stacks.ECNCE}
				for i, ecn := range ecns {
					s.send(tc.enc(fmt.Sprintf("%d.1", i), fmt.Sprintf("%d.2", i)), ecn)
				}
				for i, want := range ecns {
					for j := 1; j <= 2; j++ {
						m := mustReceive(t, s.c)
						require.Equal(t, fmt.Sprintf("%d.%d", i, j), string(m.Data))
						ecn, ok := m.Context.ECN()
						require.True(t, ok, "message %d.%d has its datagram's ECN", i, j)
						require.Equal(t, want, ecn, "message %d.%d", i, j)
					}
				}
			})
		})
	}
}

// TestUDPFramedEmptyDatagramAndHeaderOnly: an empty datagram holds no
// frame (no Message, no error); a header-only frame is an empty Message;
// an empty Message sent is its frame's header alone, one datagram.
func TestUDPFramedEmptyDatagramAndHeaderOnly(t *testing.T) {
	framedUDPSides(t, lengthPrefixOnly, func(t *testing.T, s framedUDPSide) {
		s.send(nil, stacks.NotECT)
		s.send(frame(""), stacks.NotECT)
		s.send(frame("after"), stacks.NotECT)
		require.Empty(t, mustReceive(t, s.c).Data, "the header-only frame, and nothing for the empty datagram")
		require.Equal(t, "after", string(mustReceive(t, s.c).Data))
		require.NoError(t, s.c.Send(testCtx(t), nil, nil))
		require.NoError(t, s.c.Send(testCtx(t), []byte("z"), nil))
		require.Equal(t, frame(""), s.recv(), "the header alone")
		require.Equal(t, frame("z"), s.recv())
	})
}

// TestUDPFramedOversizedFrameIsAReceiveError: a frame above the framer's
// maximum in a datagram (a header announcing 4 GiB, a body above
// WithMaxMessageSize, a line longer than the maximum) is a ReceiveError
// (MessageTooLarge) for that Message: the frames before it in the datagram
// arrive, the rest of the datagram is dropped, and the next datagrams are
// framed as before. One bad datagram does not end the Connection.
func TestUDPFramedOversizedFrameIsAReceiveError(t *testing.T) {
	requireTooLarge := func(t *testing.T, c *Connection, what string) {
		t.Helper()
		m, err := receiveWithin(c)
		var re *ReceiveError
		require.ErrorAs(t, err, &re, "%s: got %v", what, m)
		require.Equal(t, ReasonMessageTooLarge, re.Reason, "%s: %v", what, err)
		require.ErrorIs(t, err, framers.ErrMessageTooLarge, what)
	}
	t.Run("length prefix", func(t *testing.T) {
		small := func() []framers.Framer {
			return []framers.Framer{framers.NewLengthPrefix(framers.WithMaxMessageSize(8))}
		}
		framedUDPSides(t, small, func(t *testing.T, s framedUDPSide) {
			s.send(append(frame("a"), 0xff, 0xff, 0xff, 0xff, 'x'), stacks.NotECT)
			s.send(append(frame("123456789"), frame("lost")...), stacks.NotECT)
			s.send(frame("b", "c"), stacks.NotECT)
			require.Equal(t, "a", string(mustReceive(t, s.c).Data))
			requireTooLarge(t, s.c, "4 GiB announced")
			requireTooLarge(t, s.c, "9 bytes above the maximum of 8")
			for _, want := range []string{"b", "c"} {
				require.Equal(t, want, string(mustReceive(t, s.c).Data))
			}
			require.Equal(t, StateEstablished, s.c.State())
		})
	})
	t.Run("lines", func(t *testing.T) {
		s := framedUDPInitiated(t, []framers.Framer{framers.NewLines(framers.WithMaxMessageSize(4))})
		s.send([]byte("ok\ntoo long a line\nlost\n"), stacks.NotECT)
		s.send([]byte("next\n"), stacks.NotECT)
		require.Equal(t, "ok", string(mustReceive(t, s.c).Data))
		requireTooLarge(t, s.c, "line above the maximum")
		require.Equal(t, "next", string(mustReceive(t, s.c).Data))
		require.Equal(t, StateEstablished, s.c.State())
	})
}

// TestUDPFramedPassthroughDatagramIsAMessage: a framer in passthrough
// (StartPassthrough) leaves each datagram whole: every datagram is one
// Message, as without a framer, and a sent Message is one datagram.
func TestUDPFramedPassthroughDatagramIsAMessage(t *testing.T) {
	pass := func() []framers.Framer {
		h := newHookFramer()
		h.start = func(inst *framers.Instance) {
			inst.StartPassthrough()
			inst.MakeConnectionReady()
		}
		return []framers.Framer{h}
	}
	s := framedUDPInitiated(t, pass())
	s.send([]byte("one"), stacks.ECT0)
	s.send([]byte("two"), stacks.ECT1)
	for _, want := range []struct {
		data string
		ecn  uint8
	}{{"one", stacks.ECT0}, {"two", stacks.ECT1}} {
		m := mustReceive(t, s.c)
		require.Equal(t, want.data, string(m.Data), "one datagram, one Message")
		ecn, ok := m.Context.ECN()
		require.True(t, ok)
		require.Equal(t, want.ecn, ecn)
	}
	require.NoError(t, s.c.Send(testCtx(t), []byte("out"), nil))
	require.Equal(t, "out", string(s.recv()))
}

// TestUDPFramedMsgMaxLensLeaveRoomForTheFramer: on a framed UDP Connection
// sendMsgMaxLen and recvMsgMaxLen (RFC 9622 §8.1.11) are the largest
// Message that fits one datagram once framed: a Message of sendMsgMaxLen
// bytes is sent (it was a SendError: the framer's header took the datagram
// above the IPv4 payload limit), and one of recvMsgMaxLen bytes is
// received.
func TestUDPFramedMsgMaxLensLeaveRoomForTheFramer(t *testing.T) {
	const udp4Max = 65507 // the largest IPv4 UDP payload
	for _, tc := range []struct {
		name     string
		f        func() framers.Framer
		overhead int
		frame    func([]byte) []byte
	}{
		{"length", func() framers.Framer { return framers.NewLengthPrefix() }, 4,
			func(b []byte) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(b))) }},
		{"line", func() framers.Framer { return framers.NewLines() }, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sides := func(fn func(t *testing.T, s framedUDPSide)) {
				if tc.frame == nil { // framedUDPAccepted's first datagram is a length-prefix frame
					fn(t, framedUDPInitiated(t, []framers.Framer{tc.f()}))
					return
				}
				framedUDPSides(t, func() []framers.Framer { return []framers.Framer{tc.f()} }, fn)
			}
			sides(func(t *testing.T, s framedUDPSide) {
				p := s.c.GetProperties()
				for _, prop := range []Property{SendMsgMaxLen, RecvMsgMaxLen} {
					v, ok := p.Get(prop)
					require.True(t, ok, "%s", prop)
					require.Equal(t, int64(udp4Max-tc.overhead), v, "%s", prop)
				}
				body := bytes.Repeat([]byte{'a'}, udp4Max-tc.overhead)
				require.NoError(t, s.c.Send(testCtx(t), body, nil), "a Message of sendMsgMaxLen bytes is sent")
				require.Len(t, s.recv(), udp4Max, "as one full datagram")
				var wire []byte
				if tc.frame != nil {
					wire = append(tc.frame(body), body...)
				} else {
					wire = append(bytes.Clone(body), '\n')
				}
				s.send(wire, stacks.NotECT)
				m := mustReceive(t, s.c)
				require.Equal(t, body, m.Data, "a Message of recvMsgMaxLen bytes is received")
			})
		})
	}
}

// TestUDPFramedPartialSendIsOneDatagram: a Message sent in parts over a
// framed UDP Connection is gathered and framed whole: it leaves as one
// datagram, its frame holding every part (no empty datagram for a part a
// framer held, no datagram per part a framer passed down, which the peer
// would read as a cut frame). A part refused later fails the Message
// before anything of it leaves, and the Connection goes on (a Delimiter
// never saw the earlier parts, so it has none to abandon).
func TestUDPFramedPartialSendIsOneDatagram(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fs        func() []framers.Framer
		framed    func(string) []byte
		badSecond []byte // a second part the framers refuse
	}{
		{"length prefix", lengthPrefixOnly, func(s string) []byte { return frame(s) },
			nil},
		{"lines", func() []framers.Framer { return []framers.Framer{framers.NewLines()} },
			func(s string) []byte { return []byte(s + "\n") }, []byte("x\ny")},
		{"lines over length prefix", func() []framers.Framer {
			return []framers.Framer{framers.NewLengthPrefix(), framers.NewLines()}
		}, func(s string) []byte { return frame(s + "\n") }, []byte("x\ny")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(t *testing.T, s framedUDPSide) {
				ctx := testCtx(t)
				mc := NewMessageContext()
				require.NoError(t, s.c.SendPartial(ctx, []byte("ab"), mc, false))
				require.NoError(t, s.c.SendPartial(ctx, []byte("cd"), mc, false))
				require.NoError(t, s.c.SendPartial(ctx, []byte("ef"), mc, true))
				require.NoError(t, s.c.Send(ctx, []byte("next"), nil))
				require.Equal(t, string(tc.framed("abcdef")), string(s.recv()), "the Message in parts, one datagram")
				require.Equal(t, string(tc.framed("next")), string(s.recv()), "the next Message, its own datagram")
				if tc.badSecond == nil {
					return
				}
				mc = NewMessageContext()
				require.NoError(t, s.c.SendPartial(ctx, []byte("gh"), mc, false))
				var se *SendError
				require.ErrorAs(t, s.c.SendPartial(ctx, tc.badSecond, mc, false), &se)
				require.ErrorIs(t, s.c.SendPartial(ctx, []byte("ij"), mc, true), actors.ErrMessageFailed)
				require.NoError(t, s.c.Send(ctx, []byte("after"), nil))
				require.Equal(t, string(tc.framed("after")), string(s.recv()), "nothing of the failed Message left")
				require.Equal(t, StateEstablished, s.c.State())
				require.NoError(t, s.c.Err())
			}
			t.Run("initiated", func(t *testing.T) { run(t, framedUDPInitiated(t, tc.fs())) })
			t.Run("accepted", func(t *testing.T) { run(t, framedUDPAcceptedBy(t, tc.fs(), tc.framed(""))) })
		})
	}
}

// TestUDPFramedPacerKeepsDatagramsAndLifetimes: under maxSendRate, the
// Messages of a framed UDP Connection that the pacer held leave as they
// do unpaced: each framed Message one datagram (not the held batch joined
// into one), and one whose msgLifetime passed while held is Expired, not
// sent late.
func TestUDPFramedPacerKeepsDatagramsAndLifetimes(t *testing.T) {
	client := func(t *testing.T, rate int64) (*Connection, *net.UDPConn) {
		sys := newTestSystem(t)
		pc := rawUDP(t)
		tp := datagramProps(t)
		require.NoError(t, tp.Set(MaxSendRate, rate))
		pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort())))
		pre.AddFramer(framers.NewLengthPrefix())
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err)
		t.Cleanup(func() { c.Abort(); <-c.Done() })
		return c, pc
	}
	t.Run("one datagram per Message", func(t *testing.T) {
		c, pc := client(t, 800_000) // 100 kB/s: the pacer holds most of 6 kB
		done := make(chan error, 6)
		for i := range 6 {
			c.SendAsync(bytes.Repeat([]byte{byte('a' + i)}, 1000+i), nil, func(_ *Connection, err error) { done <- err })
		}
		for range 6 {
			require.NoError(t, <-done)
		}
		for i := range 6 {
			require.Equal(t, frame(strings.Repeat(string(rune('a'+i)), 1000+i)), readDatagram(t, pc), "datagram %d", i)
		}
	})
	t.Run("Expired while held", func(t *testing.T) {
		c, pc := client(t, 80_000) // 10 kB/s: 6000 bytes are held for about 450 ms
		ctx := testCtx(t)
		err := c.Send(ctx, make([]byte, 6000), NewMessageContext().Lifetime(50*time.Millisecond))
		require.ErrorIs(t, err, ErrExpired)
		require.NoError(t, c.Send(ctx, []byte("later"), nil))
		require.Equal(t, frame("later"), readDatagram(t, pc), "the only datagram")
	})
}
