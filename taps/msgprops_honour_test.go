package taps

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestMsgReliableOrderedTrueOnUDPFails: on UDP (no retransmission, no
// order) a Message that asks for msgReliable=true or msgOrdered=true,
// on its MessageContext or as the Preconnection's default, is a SendError
// wrapping ErrPropertyNotSupported, and no datagram leaves for it; the
// values UDP gives (false, or left unset) send.
func TestMsgReliableOrderedTrueOnUDPFails(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	ctx := testCtx(t)
	for _, mc := range []*MessageContext{NewMessageContext().Reliable(true), NewMessageContext().Ordered(true)} {
		err := c.Send(ctx, []byte("refused"), mc)
		require.ErrorIs(t, err, ErrPropertyNotSupported)
		var se *SendError
		require.True(t, errors.As(err, &se))
	}
	for _, mc := range []*MessageContext{nil, NewMessageContext().Reliable(false), NewMessageContext().Ordered(false)} {
		require.NoError(t, c.Send(ctx, []byte("sent"), mc))
	}
	buf := make([]byte, 64)
	for range 3 {
		require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, _, err := pc.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, "sent", string(buf[:n]), "only the messages UDP can carry as asked left")
	}
	require.NoError(t, pc.SetReadDeadline(time.Now())) // loopback: anything sent is queued by now
	_, _, err := pc.ReadFrom(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	// as the Preconnection's default
	tp := datagramProps(t)
	require.NoError(t, tp.Set(MsgReliable, true))
	d := udpClientTo(t, sys, pc, tp)
	require.ErrorIs(t, d.Send(ctx, []byte("refused"), nil), ErrPropertyNotSupported)
	require.NoError(t, d.Send(ctx, []byte("sent"), NewMessageContext().Reliable(false)), "a Message's own value wins")
}

// TestMsgReliableOrderedTrueOnTCPSends: TCP gives both, so asking for them
// sends.
func TestMsgReliableOrderedTrueOnTCPSends(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	defer s.Abort()
	defer c.Abort()
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("a"), NewMessageContext().Reliable(true).Ordered(true)))
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", string(m.Data))
}
