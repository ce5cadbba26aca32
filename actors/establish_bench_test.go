package actors

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// instantStack dials at once, over net.Pipe: establishment without a
// network, so that BenchmarkEstablish measures the actors alone.
type instantStack struct{}

func (instantStack) Name() string                      { return "instant" }
func (instantStack) Capabilities() stacks.Capabilities { return stacks.Capabilities{Reliability: true} }
func (instantStack) Listen(context.Context, stacks.Options) (stacks.Listener, error) {
	return nil, net.ErrClosed
}
func (instantStack) Dial(_ context.Context, remote netip.AddrPort, _ stacks.Options) (stacks.Transport, error) {
	a, b := net.Pipe()
	return &pipeTransport{Conn: a, peer: b, remote: remote}, nil
}

// BenchmarkEstablish is one establishment through the root, group,
// connection, preconnection, racer and candidate actors (one candidate,
// no framer) up to Ready, then an abort: the actor cost of W1 without the
// dial.
func BenchmarkEstablish(b *testing.B) {
	sys := NewSystem(Config{})
	b.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_ = sys.Shutdown(ctx)
	})
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addrB), Stacks: []stacks.Stack{instantStack{}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		link := NewLink(sys.NewID(), 0, 0, true)
		res, err := Ask(ctx, sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
		if err != nil {
			b.Fatal(err)
		}
		<-link.Ready()
		if err := link.EstablishmentErr(); err != nil {
			b.Fatal(err)
		}
		if _, err := Ask(ctx, sys, res.(*ConnectionStarted).Conn, &messages.AbortConnection{}); err != nil {
			b.Fatal(err)
		}
		<-link.Done()
	}
}
