package actors

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// earlyStack hands out pipe transports still in "0-RTT" until the test
// closes done.
type earlyStack struct {
	*fakeStack
	done chan struct{}
}

type earlyTransport struct {
	*pipeTransport
	done chan struct{}
}

func (t earlyTransport) HandshakeComplete() <-chan struct{} { return t.done }

func (s earlyStack) Dial(ctx context.Context, r netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.fakeStack.Dial(ctx, r, o)
	if err != nil {
		return nil, err
	}
	return earlyTransport{t.(*pipeTransport), s.done}, nil
}

// TestNonReplayableWaitsForTheHandshake: on a transport still in 0-RTT, a
// safely replayable message goes at once, another waits until the handshake
// completes (RFC 9622 §9.1.3.4: never early data unless safely replayable).
func TestNonReplayableWaitsForTheHandshake(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	es := earlyStack{fakeStack: newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}}), done: make(chan struct{})}
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{es}}
	link := NewLink(sys.NewID(), 0, 0, true)
	res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	conn := res.(*ConnectionStarted).Conn
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())

	sent := map[string]chan error{}
	send := func(data string, replayable bool) {
		id := sys.NewID()
		sent[data] = make(chan error, 1)
		ch := sent[data]
		require.True(t, link.ExpectSend(id, func(err error) { ch <- err }))
		sys.AS.Root.Send(conn, &messages.SendMessage{SendID: id, MessageID: id, Data: []byte(data), EndOfMessage: true,
			Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1, SafelyReplayable: replayable}})
	}
	peer := es.transport(addr).peer
	got := make(chan string, 4)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := peer.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	send("early", true)
	require.Equal(t, "early", <-got, "safely replayable: sent in 0-RTT")
	require.NoError(t, <-sent["early"])
	send("later", false)
	select {
	case d := <-got:
		t.Fatalf("%q was sent before the handshake completed", d)
	case <-time.After(50 * time.Millisecond): // an absence: nothing to await
	}
	close(es.done) // the handshake completes
	require.Equal(t, "later", <-got)
	require.NoError(t, <-sent["later"])
	sys.AS.Root.Send(conn, &messages.AbortConnection{})
	<-link.Done()
}
