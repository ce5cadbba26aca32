package taps

import (
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestReceivedPartsShareTheirMessageContext: the parts of one Message
// (ReceivedPartial, then Received) carry the same Context (RFC 9622
// §9.3.2.2), also when the application releases each part as it goes; the
// next Message has a Context of its own, and a whole Message's Context is
// its own too.
func TestReceivedPartsShareTheirMessageContext(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	defer s.Abort()
	defer c.Abort()
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, make([]byte, 1000), nil))
	require.NoError(t, c.Send(ctx, make([]byte, 500), nil))
	require.NoError(t, c.Send(ctx, []byte("whole"), nil))

	receiveParts := func(n int) (*MessageContext, int) {
		var first *MessageContext
		got := 0
		for {
			m, err := s.Receive(ctx, MaxLength(300))
			require.NoError(t, err)
			got += len(m.Data)
			if first == nil {
				first = m.Context
			}
			require.Same(t, first, m.Context, "a part of the same message")
			eom := m.EndOfMessage
			m.Release() // its memory may be the next part's: the Context is not
			if eom {
				require.Equal(t, n, got)
				return first, got
			}
		}
	}
	a, _ := receiveParts(1000)
	b, _ := receiveParts(500)
	require.NotSame(t, a, b, "the next message has a Context of its own")
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	require.NotSame(t, b, m.Context)
	re, ok := a.RemoteEndpoint()
	require.True(t, ok, "a parts' Context knows its Connection too")
	require.NotEmpty(t, re.String())
}
