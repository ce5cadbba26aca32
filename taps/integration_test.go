package taps

import (
	"fmt"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

func TestEchoOverLoopback(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ctx := testCtx(t)
	go func() {
		s, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		for {
			m, err := s.Receive(ctx)
			if err != nil {
				return
			}
			if err := s.Send(ctx, m.Data, nil); err != nil {
				return
			}
		}
	}()
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	require.Equal(t, StateEstablished, c.State())
	for i := 0; i < 10; i++ {
		msg := []byte(fmt.Sprintf("hello %d", i))
		require.NoError(t, c.Send(ctx, msg, nil))
		m, err := c.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, m.Data)
		require.True(t, m.EndOfMessage)
	}
	require.NoError(t, c.Close())
	<-c.Done()
	require.NoError(t, c.Err())
	require.Equal(t, StateClosed, c.State())
	ln.Stop()
	<-ln.Done()
}
