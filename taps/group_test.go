package taps

import (
	"fmt"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// echoServer accepts every connection and echoes its messages until it ends.
func echoServer(t *testing.T, ln *Listener) {
	ctx := testCtx(t)
	go func() {
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					m, err := s.Receive(ctx)
					if err != nil {
						return
					}
					if s.Send(ctx, m.Data, nil) != nil {
						return
					}
				}
			}()
		}
	}()
}

func TestCloneOverTCPIsANewConnectionInTheGroup(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	ctx := testCtx(t)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	require.Equal(t, StateEstablished, clone.State())
	require.NotEqual(t, c.ID(), clone.ID())
	for i, conn := range []*Connection{c, clone} {
		msg := []byte(fmt.Sprint("from connection ", i))
		require.NoError(t, conn.Send(ctx, msg, nil))
		m, err := conn.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, m.Data, "each clone exchanges its own messages")
	}
	group, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{c, clone}, group)
	group2, err := clone.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, group, group2)

	// entangled: a connection property set on one member is set on all...
	require.NoError(t, clone.SetProperty(ConnTimeout, 42*time.Second))
	require.Eventually(t, func() bool {
		v, _ := c.GetProperties().Get(ConnTimeout)
		return v == 42*time.Second
	}, 5*time.Second, 5*time.Millisecond)
	// ...except connPriority
	require.NoError(t, clone.SetProperty(ConnPriority, 7))
	require.NoError(t, c.SetProperty(ConnTimeout, 43*time.Second)) // a later change, to order the check
	require.Eventually(t, func() bool {
		v, _ := clone.GetProperties().Get(ConnTimeout)
		return v == 43*time.Second
	}, 5*time.Second, 5*time.Millisecond)
	p, _ := c.GetProperties().Get(ConnPriority)
	require.Equal(t, int64(100), p)
	p, _ = clone.GetProperties().Get(ConnPriority)
	require.Equal(t, int64(7), p)

	c.CloseGroup()
	<-c.Done()
	<-clone.Done()
	require.NoError(t, c.Err())
	require.NoError(t, clone.Err())
}

func TestAbortGroupAbortsEveryMember(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	clone, err := c.Clone(testCtx(t), CloneWithFramer(framers.NewLengthPrefix()))
	require.NoError(t, err)
	clone.AbortGroup()
	<-c.Done()
	<-clone.Done()
	require.ErrorIs(t, c.Err(), ErrAborted)
	require.ErrorIs(t, clone.Err(), ErrAborted)
	_, err = c.Clone(testCtx(t))
	var ce *CloneError
	require.ErrorAs(t, err, &ce)
}

func TestSetPropertyRejectsBadInputWithoutClosing(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	c := dial(t, sys, ln)
	var pe *PropertyError
	require.ErrorAs(t, c.SetProperty(ConnTimeout, "soon"), &pe)
	require.ErrorIs(t, c.SetProperty(ConnTimeout, "soon"), ErrInvalidPropertyType)
	require.ErrorIs(t, c.SetProperty(ConnPriority, -1), ErrInvalidPropertyValue)
	require.ErrorIs(t, c.SetProperty(CanSend, true), ErrReadOnlyProperty)
	require.ErrorIs(t, c.SetProperty(Reliability, Require), ErrInvalidPropertyType)
	require.Equal(t, StateEstablished, c.State(), "a SetProperty error never ends the connection")
	props := c.GetProperties()
	require.Equal(t, "tcp", props.Stack)
	require.True(t, props.CanSend)
	require.True(t, props.CanReceive)
	v, ok := props.Get(ConnState)
	require.True(t, ok)
	require.Equal(t, StateEstablished, v)
	c.Abort()
	<-c.Done()
}

func TestCloneOverQUICIsAStreamAndPeerStreamsJoinTheGroup(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	require.NoError(t, tp.Set(GroupConnLimit, 1)) // one more member the peer may open
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	ctx := testCtx(t)
	accepted := make(chan *Connection, 10)
	go func() {
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			accepted <- s
			go func() {
				for {
					m, err := s.Receive(ctx)
					if err != nil || s.Send(ctx, m.Data, nil) != nil {
						return
					}
				}
			}()
		}
	}()
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	roundTrip(t, c, "first stream")
	first := <-accepted

	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", clone.GetProperties().Stack)
	roundTrip(t, clone, "second stream") // the peer learns of the stream with this message
	second := <-accepted
	group, err := first.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{first, second}, group,
		"a stream the peer opened arrives as ConnectionReceived in the same group")
	roundTrip(t, c, "first stream again") // streams are independent

	// groupConnLimit 1: a second peer-opened member is refused
	third, err := c.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, third.Send(ctx, []byte("refused"), nil))
	_, err = third.Receive(ctx)
	require.Error(t, err)

	c.AbortGroup()
	<-c.Done()
	<-clone.Done()
	<-third.Done()
}
