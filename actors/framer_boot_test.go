package actors

import (
	"context"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// waitingFramer is Ready only once its peer has sent a byte (a framer with
// a handshake).
type waitingFramer struct{}

func (waitingFramer) Start(*framers.Instance) {}
func (waitingFramer) Stop(*framers.Instance)  {}
func (waitingFramer) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, _ bool) {
	inst.Send(data)
}
func (waitingFramer) HandleReceivedData(inst *framers.Instance) {
	if b, ok := inst.Parse(1, -1); ok {
		inst.AdvanceReceiveCursor(len(b))
		inst.MakeConnectionReady()
	}
}

// An accepted connection whose framer is Ready in its Start arms no setup
// deadline (its framer's Ready is counted in the same turn, without a
// framerReady message: nothing is left to bound); one whose framer waits
// for the peer arms it.
func TestAcceptedFramerReadyAtStartArmsNoSetupDeadline(t *testing.T) {
	armed := make(chan struct{}, 16)
	hook := func() { armed <- struct{}{} }
	testHookSetupArmed.Store(&hook)
	defer testHookSetupArmed.Store(nil)
	listen := func(f framers.Framer) (*System, *ListenerStarted, *fakeListener) {
		sys := NewSystem(Config{})
		ln := newFakeListener(1, nil)
		cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{&fakeListenStack{ln: ln}}, Framers: []framers.Framer{f}}
		res, err := Ask(context.Background(), sys, sys.Root, &messages.StartListening{Config: cfg})
		require.NoError(t, err)
		return sys, res.(*ListenerStarted), ln
	}

	t.Run("ready at start", func(t *testing.T) {
		sys, st, _ := listen(framers.NewLengthPrefix())
		defer shutdown(t, sys)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := st.Queue.Accept(ctx)
		require.NoError(t, err)
		// a request after the connection's first turn (startTransport) has ended
		_, err = Ask(ctx, sys, s.Conn, &messages.GetConnectionInfo{})
		require.NoError(t, err)
		require.Empty(t, armed, "setup deadline armed for a connection Ready at once")
		require.Equal(t, Established, s.Link.State())
	})

	t.Run("waits for the peer", func(t *testing.T) {
		for len(armed) > 0 {
			<-armed
		}
		sys, st, ln := listen(waitingFramer{})
		defer shutdown(t, sys)
		select {
		case <-armed:
		case <-time.After(10 * time.Second):
			t.Fatal("no setup deadline for a connection whose framer waits")
		}
		made := ln.transports()
		require.Len(t, made, 1)
		go func() { _, _ = made[0].peer.Write([]byte{1}) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := st.Queue.Accept(ctx)
		require.NoError(t, err)
		require.Equal(t, Established, s.Link.State())
	})
}
