package taps

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// fillSendBuffer sends 64 KiB messages to a peer that reads nothing
// until one waits for room in vain for 200 ms: the kernel's buffers and
// the send queue are full, and stay so while the peer does not read.
func fillSendBuffer(t *testing.T, ctx context.Context, c *Connection) {
	t.Helper()
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Send(wctx, pattern(64<<10, byte(i)), nil)
		cancel()
		var se *SendError
		if errors.As(err, &se) && errors.Is(err, context.DeadlineExceeded) {
			return // it waited for room, and was not handed over
		}
		require.NoError(t, ctx.Err(), "the send queue never filled")
		require.True(t, err == nil || errors.Is(err, context.DeadlineExceeded), "%v", err)
	}
}

// TestSendWaitingForRoomExpiresAtItsLifetime: a blocking Send that waits
// for room in a full send buffer (a peer that reads nothing) is Expired
// (a SendError unwrapping to ErrExpired) once its msgLifetime passes, as
// a message queued behind a stalled write is: RFC 9622 §9.1.3.1, the
// lifetime is how long a message may wait in the system before it is
// sent. It waited until its ctx ended instead. Nothing of it reaches the
// peer, and the connection goes on. The first part of a Message sent in
// parts expires the same way, and the Message's later parts fail with it.
func TestSendWaitingForRoomExpiresAtItsLifetime(t *testing.T) {
	const lifetime = 100 * time.Millisecond
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithProtocols("tcp"), WithSendBuffer(64<<10))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	p, err := ln.Accept()
	require.NoError(t, err)
	defer p.Close()
	fillSendBuffer(t, ctx, c)

	start := time.Now()
	err = c.Send(ctx, []byte("late"), NewMessageContext().Lifetime(lifetime))
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrExpired)
	require.Less(t, time.Since(start), 5*time.Second, "it waited for its ctx, not its lifetime")

	mc := NewMessageContext().Lifetime(lifetime)
	require.ErrorIs(t, c.SendPartial(ctx, []byte("late-part-1"), mc, false), ErrExpired)
	err = c.SendPartial(ctx, []byte("late-part-2"), mc, true)
	require.ErrorIs(t, err, ErrMessageFailed)
	require.ErrorIs(t, err, ErrExpired)

	// the connection goes on: a message sent once there is room arrives,
	// and none of the expired ones did
	sent := make(chan error, 1)
	go func() { sent <- c.Send(ctx, []byte("after"), nil) }()
	require.NoError(t, p.SetReadDeadline(time.Now().Add(8*time.Second)))
	for {
		m, err := readFrame(p)
		require.NoError(t, err)
		require.NotContains(t, []string{"late", "late-part-1late-part-2", "late-part-2"}, m)
		if m == "after" {
			break
		}
	}
	require.NoError(t, <-sent)
	require.Equal(t, StateEstablished, c.State())
}
