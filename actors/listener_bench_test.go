package actors

import (
	"context"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// BenchmarkListenerAcceptClose is the actor cost of one received
// connection, without a kernel: a listener accepts a pipe transport (the
// listener, root, group, connection and framer actors up to Ready and the
// ConnectionReceived queue), the application takes it and closes it
// gracefully, and the close cascade (framer Stop, FIN, the peer's end of
// stream, the stop of the framer, connection and group actors) runs to
// Closed. tapsbench W10 on loopback TCP is taps.BenchmarkAcceptClose.
func BenchmarkListenerAcceptClose(b *testing.B) {
	sys := NewSystem(Config{})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sys.Shutdown(ctx)
	}()
	ln := newFakeListener(b.N, nil)
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{&fakeListenStack{ln: ln}},
		Framers: []framers.Framer{framers.NewLengthPrefix()}}
	ctx := context.Background()
	res, err := Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	q := res.(*ListenerStarted).Queue
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N { // not b.Loop: the listener accepts b.N transports
		s, err := q.Accept(ctx)
		if err != nil {
			b.Fatal(err)
		}
		sys.AS.Root.Send(s.Conn, &messages.CloseConnection{})
		<-s.Link.Done()
	}
}
