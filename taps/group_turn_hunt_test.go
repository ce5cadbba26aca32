package taps

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGroupExpiredWhileWaitingForTurnKeepsGroupMoving: two streams of one
// QUIC session (a Connection and its Clone) share the group's transmission
// scheduler (connScheduler). A message of A whose msgLifetime passes while
// A waits for the turn (B holds it: its write is blocked by a peer that
// does not read B) is Expired; once B's peer reads again, B must still be
// able to send: A gives back the turn that came for its expired message.
func TestGroupExpiredWhileWaitingForTurnKeepsGroupMoving(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln := quicListen(t, ctx, sys, pki, quicOnly(t))
	a, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
	require.NoError(t, err)
	defer func() { a.AbortGroup(); <-a.Done() }()
	require.NoError(t, a.Send(ctx, []byte("A"), nil))
	b, err := a.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, b.Send(ctx, []byte("B"), nil))

	releaseB := make(chan struct{})
	for range 2 { // the peer reads A's stream; B's only once released
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		name := string(m.Data)
		go func() {
			if name == "B" {
				select {
				case <-releaseB:
				case <-ctx.Done():
					return
				}
			}
			for {
				m, err := s.Receive(ctx)
				if err != nil {
					return
				}
				m.Release()
			}
		}()
	}

	// B sends until its write blocks (flow control: its peer does not
	// read), holding the turn
	big := make([]byte, 512<<10)
	for i := 0; ; i++ {
		require.Less(t, i, 2000, "B's write never blocked")
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := b.Send(sctx, big, nil)
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
	}
	// A's short-lived message waits for the turn and expires
	expired := false
	for i := 0; i < 100 && !expired; i++ {
		err := a.Send(ctx, []byte(fmt.Sprint("a-", i)), NewMessageContext().Lifetime(20*time.Millisecond))
		if errors.Is(err, ErrExpired) {
			expired = true
			break
		}
		require.NoError(t, err)
	}
	require.True(t, expired, "A's message never waited for the turn")
	close(releaseB)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, b.Send(sctx, []byte("b-after"), nil), "B stalled: A kept the turn")
	require.NoError(t, a.Send(sctx, []byte("a-after"), nil), "A stalled")
}
