package taps

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// chunkedFramer frames a message as chunks: a 2-byte header (body length,
// last-chunk flag) before each chunk's body, handed to
// DeliverAndAdvanceReceiveCursor at once, so a body split over reads is
// earmarked. Only the last chunk ends the message.
type chunkedFramer struct{}

func (chunkedFramer) Start(inst *framers.Instance) { inst.MakeConnectionReady() }
func (chunkedFramer) Stop(inst *framers.Instance)  { inst.MakeConnectionClosed() }
func (chunkedFramer) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, eom bool) {
	last := byte(0)
	if eom {
		last = 1
	}
	inst.Send(append([]byte{byte(len(data)), last}, data...))
}
func (chunkedFramer) HandleReceivedData(inst *framers.Instance) {
	h, ok := inst.Parse(2, 2)
	if !ok {
		return
	}
	n, last := int(h[0]), h[1] == 1
	inst.AdvanceReceiveCursor(2)
	inst.DeliverAndAdvanceReceiveCursor(nil, n, last)
}

// A chunk whose body arrives in two reads does not end the message unless
// it is the last chunk.
func TestEarmarkedChunkDoesNotEndTheMessage(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, chunkedFramer{})
	ctx := testCtx(t)
	_, err := peer.Write([]byte{4, 0, 'a', 'b'}) // a 4-byte chunk, not the last: 2 bytes so far
	require.NoError(t, err)
	m, err := c.Receive(ctx, MinIncompleteLength(2))
	require.NoError(t, err)
	require.Equal(t, "ab", string(m.Data))
	require.False(t, m.EndOfMessage)
	_, err = peer.Write([]byte{'c', 'd', 2, 1, 'e', 'f'})
	require.NoError(t, err)
	m, err = c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "cdef", string(m.Data), "the rest of the message, up to its last chunk")
	require.True(t, m.EndOfMessage)
	c.Abort()
	<-c.Done()
}

var errLooped = errors.New("test framer called without end")

// emptyDeliverer delivers a zero-length message on every call and never
// consumes anything: a framer bug that must not make gotaps call it
// forever (spinning the reader, collecting deliveries without bound).
type emptyDeliverer struct{ calls *atomic.Int64 }

func (emptyDeliverer) Start(inst *framers.Instance) { inst.MakeConnectionReady() }
func (emptyDeliverer) Stop(inst *framers.Instance)  { inst.MakeConnectionClosed() }
func (emptyDeliverer) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, _ bool) {
	inst.Send(data)
}
func (f emptyDeliverer) HandleReceivedData(inst *framers.Instance) {
	if f.calls.Add(1) > 100000 {
		inst.FailConnection(errLooped) // the test's way out of the loop
		return
	}
	inst.Deliver(nil, nil, true)
}

func TestFramerDeliveringWithoutConsumingIsNotCalledForever(t *testing.T) {
	sys := newTestSystem(t)
	var calls atomic.Int64
	c, peer := rawPeer(t, sys, emptyDeliverer{&calls})
	_, err := peer.Write([]byte("abc"))
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Empty(t, m.Data)
	require.Less(t, calls.Load(), int64(1000), "HandleReceivedData was called again and again")
	c.Abort()
	<-c.Done()
	require.NotErrorIs(t, c.Err(), errLooped)
}

// The stream ending inside a framed message is a ReceiveError with
// ReasonDeframingFailed (ErrTruncated), with one framer or two stacked.
func TestTruncatedFramedMessageIsAReceiveError(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   []framers.Framer
		wire []byte
	}{
		{"length prefix", []framers.Framer{framers.NewLengthPrefix()}, frame("whole")[:7]},
		{"stacked, upper truncated", []framers.Framer{framers.NewLengthPrefix(), framers.NewLengthPrefix()},
			frame(string(frame("inner")[:6]))},
		{"earmarked body", []framers.Framer{chunkedFramer{}}, []byte{9, 1, 'a', 'b'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			c, peer := rawPeer(t, sys, tc.fs...)
			_, err := peer.Write(tc.wire)
			require.NoError(t, err)
			require.NoError(t, peer.Close())
			ctx := testCtx(t)
			var re *ReceiveError
			for {
				m, err := c.Receive(ctx)
				if err == nil {
					require.False(t, m.EndOfMessage, "no whole message was sent")
					continue
				}
				require.ErrorAs(t, err, &re)
				break
			}
			require.Equal(t, ReasonDeframingFailed, re.Reason, "%v", re)
			require.ErrorIs(t, re, framers.ErrTruncated)
			c.Abort()
			<-c.Done()
		})
	}
}

// panicOnSend panics in NewSentMessage.
type panicOnSend struct{ framers.Framer }

func (panicOnSend) NewSentMessage(*framers.Instance, []byte, framers.Metadata, bool) {
	panic("framer send bug")
}

func TestFramerPanicOnSendFailsTheSend(t *testing.T) {
	sys := newTestSystem(t)
	c, _ := rawPeer(t, sys, panicOnSend{framers.NewLengthPrefix()})
	err := c.Send(testCtx(t), []byte("x"), nil)
	require.Error(t, err)
	var se *SendError
	require.ErrorAs(t, err, &se)
	<-c.Done()
	var pe *PanicError
	require.ErrorAs(t, c.Err(), &pe)
}

// panicOnStart panics in Start.
type panicOnStart struct{ framers.Framer }

func (panicOnStart) Start(*framers.Instance) { panic("framer start bug") }

func TestFramerPanicOnStartFailsEstablishment(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	go func() {
		for {
			p, err := ln.Accept()
			if err != nil {
				return
			}
			defer p.Close()
		}
	}()
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	pre.AddFramer(panicOnStart{framers.NewLengthPrefix()})
	_, err := pre.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
}

func TestFramerPanicOnReceiveIsAReceiveError(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, panicFramer{framers.NewLengthPrefix()})
	_, err := peer.Write(frame("x"))
	require.NoError(t, err)
	_, err = c.Receive(testCtx(t))
	var re *ReceiveError
	require.ErrorAs(t, err, &re)
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
	<-c.Done()
}
