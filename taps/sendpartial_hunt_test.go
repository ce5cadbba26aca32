package taps

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// sendFixPair is a connected pair over loopback for the send-path tests:
// TCP with a length-prefix framer ("tcp+lp"), two stacked ("tcp+lp+lp") or
// a "\n" delimiter ("tcp+delim"), TLS over TCP ("tls+lp") or a QUIC stream
// ("quic"), both with a length-prefix framer.
func sendFixPair(t *testing.T, sys *System, kind string) (c, s *Connection) {
	t.Helper()
	ctx := testCtx(t)
	switch kind {
	case "tcp+lp":
		return sendRecvHuntPair(t, sys, kind)
	case "tcp+lp+lp":
		ln := listenLoopback(t, sys, framers.NewLengthPrefix(), framers.NewLengthPrefix())
		t.Cleanup(ln.Stop)
		return dialAccept(t, sys, ln, framers.NewLengthPrefix(), framers.NewLengthPrefix())
	case "tcp+delim":
		nl := func() framers.Framer { return framers.NewDelimiter([]byte("\n")) }
		ln := listenLoopback(t, sys, nl())
		t.Cleanup(ln.Stop)
		return dialAccept(t, sys, ln, nl())
	case "tls+lp", "quic":
		tp := quicOnly(t)
		if kind == "tls+lp" {
			tp = NewTransportProperties()
			require.NoError(t, tp.Prohibit(Multistreaming))
		}
		pki := newTestPKI(t)
		ln := quicListen(t, ctx, sys, pki, tp)
		c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
		require.NoError(t, err)
		// a QUIC server sees the stream once data arrives on it
		require.NoError(t, c.Send(ctx, []byte("hello"), nil))
		s, err = ln.Accept(ctx)
		require.NoError(t, err)
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, "hello", string(m.Data))
		want := "tls"
		if kind == "quic" {
			want = "quic"
		}
		require.Equal(t, want, c.GetProperties().Stack)
		return c, s
	}
	t.Fatalf("unknown kind %q", kind)
	return nil, nil
}

// nextMessage is s's next (whole) Message, or a test failure after 3 s.
func nextMessage(t *testing.T, s *Connection) *Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 3*time.Second)
	defer cancel()
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	return m
}

// TestSendPartialFailedLastPartEndsMessage: the last part of a Message
// sent in parts fails (a property the stack cannot honour): the Message is
// over, nothing of it reaches the peer (the framer drops the parts it
// held), and later Messages go out (before, the connection kept waiting
// for the Message's end and every later Send waited for ever). A lifetime
// set for the last part only is not the Message's (its first part's is):
// that part is sent, and the Message arrives whole.
func TestSendPartialFailedLastPartEndsMessage(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "tls+lp", "quic"} {
		for _, how := range []string{"unsupported", "lifetime"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				sys := newTestSystem(t)
				c, s := sendFixPair(t, sys, kind)
				ctx := testCtx(t)
				mc := NewMessageContext()
				require.NoError(t, c.SendPartial(ctx, []byte("A1"), mc, false))
				var want []string
				switch how {
				case "unsupported":
					mc.NoSegmentation(true) // not on a byte stream: a SendError
					var se *SendError
					require.ErrorAs(t, c.SendPartial(ctx, []byte("A2"), mc, true), &se)
					require.Equal(t, ReasonInvalidMessageProperties, se.Reason)
					require.ErrorIs(t, se, ErrPropertyNotSupported)
				case "lifetime":
					mc.Lifetime(time.Nanosecond) // the Message's lifetime is A1's
					require.NoError(t, c.SendPartial(ctx, []byte("A2"), mc, true))
					want = append(want, "A1A2")
				}
				sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				require.NoError(t, c.Send(sctx, []byte("next"), nil), "a later Message never went out")
				for _, w := range append(want, "next") {
					require.Equal(t, w, string(nextMessage(t, s).Data))
				}
			})
		}
	}
}

// TestSendPartialFailedPartFailsMessage: a part that fails in the middle
// of a Message on a byte stream fails the Message as a whole: its later
// parts get a SendError unwrapping to ErrMessageFailed and to the failed
// part's error, the peer never gets a Message with a part missing (before,
// an Expired middle part was dropped and "AAAACCCC" arrived as a complete
// Message), and other Messages flow again (with two framers stacked, the
// abort reaches the lower one after the parts). A middle part's lifetime
// is not the Message's: it is sent. A first part that expires fails the
// Message.
func TestSendPartialFailedPartFailsMessage(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "tcp+lp+lp", "tls+lp", "quic"} {
		t.Run(kind, func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendFixPair(t, sys, kind)
			ctx := testCtx(t)

			// a lifetime on a middle part only: the Message arrives whole
			mc := NewMessageContext()
			require.NoError(t, c.SendPartial(ctx, []byte("AAAA"), mc, false))
			require.NoError(t, c.SendPartial(ctx, []byte("BBBB"), mc.Lifetime(time.Nanosecond), false))
			require.NoError(t, c.SendPartial(ctx, []byte("CCCC"), mc.Lifetime(time.Hour), true))
			require.Equal(t, "AAAABBBBCCCC", string(nextMessage(t, s).Data))

			// an unsupported middle part: the Message fails from there
			mc = NewMessageContext()
			require.NoError(t, c.SendPartial(ctx, []byte("DDDD"), mc, false))
			var se *SendError
			require.ErrorAs(t, c.SendPartial(ctx, []byte("EEEE"), mc.NoSegmentation(true), false), &se)
			require.ErrorIs(t, se, ErrPropertyNotSupported)
			err := c.SendPartial(ctx, []byte("FFFF"), mc.NoSegmentation(false), true)
			require.ErrorAs(t, err, &se)
			require.ErrorIs(t, err, ErrMessageFailed)
			require.ErrorIs(t, err, ErrPropertyNotSupported)

			// an expired first part: so is the rest
			mc = NewMessageContext().Lifetime(time.Nanosecond)
			require.ErrorIs(t, c.SendPartial(ctx, []byte("GGGG"), mc, false), ErrExpired)
			err = c.SendPartial(ctx, []byte("HHHH"), mc.Lifetime(time.Hour), true)
			require.ErrorIs(t, err, ErrMessageFailed)
			require.ErrorIs(t, err, ErrExpired)

			require.NoError(t, c.Send(ctx, []byte("next"), nil))
			require.Equal(t, "next", string(nextMessage(t, s).Data), "a piece of a failed Message arrived")
		})
	}
}

// TestSendPartialHeldMessagesGoOutInOrder: Messages sent while another
// one is open (sent in parts) wait behind it and go out in order once it
// ends, a Message sent in parts among them too, and the ones held behind
// that one (before, releaseHeld stopped at the first held Message that
// opened a new one, and nothing sent the rest: "b1-b2" never went out).
// Blocking SendPartials whose ctx ended after they were handed over, and
// SendPartialAsync, alike.
func TestSendPartialHeldMessagesGoOutInOrder(t *testing.T) {
	for _, kind := range []string{"tcp+lp", "quic"} {
		t.Run(kind+"/blocking", func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendFixPair(t, sys, kind)
			ctx := testCtx(t)
			mcA, mcB := NewMessageContext(), NewMessageContext()
			require.NoError(t, c.SendPartial(ctx, []byte("a1-"), mcA, false))
			short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			// B waits behind A: the calls end with their ctx, their parts
			// handed over
			require.ErrorIs(t, c.SendPartial(short, []byte("b1-"), mcB, false), context.DeadlineExceeded)
			require.ErrorIs(t, c.SendPartial(short, []byte("b2"), mcB, true), context.DeadlineExceeded)
			require.NoError(t, c.SendPartial(ctx, []byte("a2"), mcA, true))
			require.Equal(t, "a1-a2", string(nextMessage(t, s).Data))
			require.Equal(t, "b1-b2", string(nextMessage(t, s).Data))
		})
		t.Run(kind+"/async", func(t *testing.T) {
			sys := newTestSystem(t)
			c, s := sendFixPair(t, sys, kind)
			ctx := testCtx(t)
			var mu sync.Mutex
			var failed []string
			done := make(chan struct{}, 16)
			sent := func(name string) func(*Connection, error) {
				return func(_ *Connection, err error) {
					if err != nil {
						mu.Lock()
						failed = append(failed, fmt.Sprint(name, ": ", err))
						mu.Unlock()
					}
					done <- struct{}{}
				}
			}
			mcA, mcB, mcD := NewMessageContext(), NewMessageContext(), NewMessageContext()
			require.NoError(t, c.SendPartial(ctx, []byte("a1-"), mcA, false))
			c.SendPartialAsync([]byte("b1-"), mcB, false, sent("b1")) // held behind A
			c.SendAsync([]byte("c"), nil, sent("c"))                  // held behind A, then B
			c.SendPartialAsync([]byte("b2"), mcB, true, sent("b2"))
			c.SendPartialAsync([]byte("d1-"), mcD, false, sent("d1"))
			c.SendAsync([]byte("e"), nil, sent("e")) // held behind D
			c.SendPartialAsync([]byte("d2"), mcD, true, sent("d2"))
			require.NoError(t, c.SendPartial(ctx, []byte("a2"), mcA, true))
			for range 6 {
				select {
				case <-done:
				case <-ctx.Done():
					t.Fatal("a held send never got its event")
				}
			}
			require.Empty(t, failed)
			for _, want := range []string{"a1-a2", "b1-b2", "c", "d1-d2", "e"} {
				require.Equal(t, want, string(nextMessage(t, s).Data))
			}
		})
	}
}

// TestSendPartialPartsAreChecked: every part of a Message sent in parts
// goes through the framer's CheckMessage (framers.MessageChecker: "for a
// partial send it checks that part"), and, for a framer with a largest
// message, the size of the parts so far is checked too: a part refused is
// a SendError that fails its Message, never a connection failure (before,
// only the last part was checked: a part with the delimiter split the
// Message at the peer, and one above the length prefix's maximum failed
// the connection).
func TestSendPartialPartsAreChecked(t *testing.T) {
	t.Run("delimiter", func(t *testing.T) {
		sys := newTestSystem(t)
		c, s := sendFixPair(t, sys, "tcp+delim")
		ctx := testCtx(t)
		var se *SendError
		require.ErrorAs(t, c.Send(ctx, []byte("x\ny"), nil), &se, "control: a whole Message is checked")
		mc := NewMessageContext()
		require.ErrorAs(t, c.SendPartial(ctx, []byte("ab\ncd"), mc, false), &se)
		require.ErrorIs(t, se, framers.ErrDeframingFailed)
		require.ErrorIs(t, c.SendPartial(ctx, []byte("ef"), mc, true), ErrMessageFailed)
		require.NoError(t, c.Send(ctx, []byte("next"), nil))
		require.Equal(t, "next", string(nextMessage(t, s).Data))
	})
	t.Run("length prefix", func(t *testing.T) {
		sys := newTestSystem(t)
		lp := func() framers.Framer { return framers.NewLengthPrefix(framers.WithMaxMessageSize(100)) }
		ln := listenLoopback(t, sys, lp())
		t.Cleanup(ln.Stop)
		c, s := dialAccept(t, sys, ln, lp())
		ctx := testCtx(t)
		var se *SendError
		require.ErrorAs(t, c.Send(ctx, make([]byte, 200), nil), &se, "control: a whole Message")
		require.ErrorAs(t, c.SendPartial(ctx, make([]byte, 200), NewMessageContext(), false), &se, "a part above the maximum")
		require.Equal(t, ReasonMessageTooLarge, se.Reason)
		// parts that fit alone, not together: the one that takes the
		// Message above the maximum fails it
		mc := NewMessageContext()
		require.NoError(t, c.SendPartial(ctx, make([]byte, 60), mc, false))
		err := c.SendPartial(ctx, make([]byte, 60), mc, false)
		require.ErrorAs(t, err, &se)
		var tl *framers.TooLargeError
		require.ErrorAs(t, err, &tl)
		require.Equal(t, uint64(120), tl.Size)
		require.ErrorIs(t, c.SendPartial(ctx, []byte("end"), mc, true), ErrMessageFailed)
		require.NoError(t, c.Send(ctx, []byte("next"), nil), "the connection goes on (%v)", c.Err())
		require.Equal(t, "next", string(nextMessage(t, s).Data), "a piece of the failed Message arrived")
		require.NoError(t, c.Err())
	})
}

// TestSendPartialDelimiterPartsSentThenFailed: a Delimiter passes the
// parts of a Message down as they come; when a later part fails, what went
// out cannot be taken back: the connection fails (ErrMessageAbandoned)
// rather than let the peer read those bytes as the start of the next
// Message, and the peer gets a cut Message, never a complete one.
func TestSendPartialDelimiterPartsSentThenFailed(t *testing.T) {
	sys := newTestSystem(t)
	c, s := sendFixPair(t, sys, "tcp+delim")
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("first"), nil))
	mc := NewMessageContext()
	require.NoError(t, c.SendPartial(ctx, []byte("ab"), mc, false))
	var se *SendError
	require.ErrorAs(t, c.SendPartial(ctx, []byte("c\nd"), mc, false), &se)
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not fail")
	}
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce)
	require.ErrorIs(t, ce, framers.ErrMessageAbandoned)
	require.Equal(t, "first", string(nextMessage(t, s).Data))
	m, err := s.Receive(ctx)
	require.Error(t, err, "the peer got %q as a Message", m)
}

// TestSendPartialNotHandedOverFailsMessage: a part that cannot be handed
// over (SendPartialAsync with the send queue full) fails its Message as a
// whole: its later parts fail, and the connection drops the earlier ones
// it holds (here held behind another open Message), so the peer never gets
// the Message without that part.
func TestSendPartialNotHandedOverFailsMessage(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	t.Cleanup(ln.Stop)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	pre := NewPreconnection(WithSystem(sys), WithSendBuffer(100), WithRemoteEndpoint(loopbackRemote(ap)))
	pre.AddFramer(framers.NewLengthPrefix())
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	s, err := ln.Accept(ctx)
	require.NoError(t, err)

	var events [3]chan error
	sent := func(i int) func(*Connection, error) {
		events[i] = make(chan error, 1)
		return func(_ *Connection, err error) { events[i] <- err }
	}
	mcA, mcB := NewMessageContext(), NewMessageContext()
	require.NoError(t, c.SendPartial(ctx, []byte("a1-"), mcA, false))
	c.SendPartialAsync(make([]byte, 80), mcB, false, sent(0)) // held behind A: its bytes stay queued
	c.SendPartialAsync(make([]byte, 80), mcB, false, sent(1)) // the queue is full
	c.SendPartialAsync([]byte("b3"), mcB, true, sent(2))
	require.NoError(t, c.SendPartial(ctx, []byte("a2"), mcA, true))
	require.NoError(t, <-events[0], "the first part was handed over")
	require.ErrorIs(t, <-events[1], ErrSendQueueFull)
	require.ErrorIs(t, <-events[2], ErrMessageFailed)
	require.NoError(t, c.Send(ctx, []byte("next"), nil))
	require.Equal(t, "a1-a2", string(nextMessage(t, s).Data))
	require.Equal(t, "next", string(nextMessage(t, s).Data), "a piece of B arrived")
}
