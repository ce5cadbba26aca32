package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

type spawnChild struct{}

// spawnParent spawns one child per *spawnChild it gets and stops it at
// once; the child's Terminated returns the cycle to the benchmark.
type spawnParent struct {
	props *actor.Props
	done  chan struct{}
}

func (p *spawnParent) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *spawnChild:
		pid := ctx.Spawn(p.props)
		ctx.Stop(pid)
	case *actor.Terminated:
		p.done <- struct{}{}
	}
}

// BenchmarkSpawnStop is the cost of one actor's life as a connection's
// children have it: spawned by a parent on the inline mailbox, stopped,
// and its Terminated handled by the parent.
func BenchmarkSpawnStop(b *testing.B) {
	s := NewSystem(Config{})
	b.Cleanup(func() { _ = s.Shutdown(b.Context()) })
	child := controlProps(func() actor.Actor { return actor.ReceiveFunc(func(actor.Context) {}) })
	p := &spawnParent{props: child, done: make(chan struct{}, 1)}
	parent := s.AS.Root.Spawn(controlProps(func() actor.Actor { return p }))
	msg := &spawnChild{}
	b.ReportAllocs()
	for b.Loop() {
		s.AS.Root.Send(parent, msg)
		<-p.done
	}
}
