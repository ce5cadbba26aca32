package actors

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
)

// ErrActorGone is returned by Ask when the target actor no longer exists.
var ErrActorGone = errors.New("actor is gone")

// replyProc is a tiny process that receives exactly one reply into a
// channel: a ctx-aware future that starts no goroutine and arms no timer
// (protoactor-notes §7.6).
type replyProc struct{ ch chan any }

func (r *replyProc) SendUserMessage(_ *actor.PID, m any) {
	_, msg, _ := actor.UnwrapEnvelope(m)
	select {
	case r.ch <- msg:
	default:
	}
}

func (r *replyProc) SendSystemMessage(_ *actor.PID, m any) {
	if t, ok := m.(*actor.Terminated); ok {
		select {
		case r.ch <- t:
		default:
		}
	}
}

func (r *replyProc) Stop(*actor.PID) {}

// Ask sends req to pid and waits (ctx-bounded) for the reply. A reply that
// is an error value is returned as the error; a dead target gives
// ErrActorGone. Late replies after ctx ends go to dead letters.
func Ask(ctx context.Context, s *System, pid *actor.PID, req any) (any, error) {
	p := &replyProc{ch: make(chan any, 1)}
	self, ok := s.AS.ProcessRegistry.Add(p, "ask"+s.AS.ProcessRegistry.NextId())
	if !ok {
		return nil, errors.New("ask: registry refused the reply process")
	}
	defer s.AS.ProcessRegistry.Remove(self)
	s.AS.Root.RequestWithCustomSender(pid, req, self)
	select {
	case r := <-p.ch:
		if _, dead := r.(*actor.DeadLetterResponse); dead {
			return nil, ErrActorGone
		}
		if err, ok := r.(error); ok {
			return nil, err
		}
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// StopAndWait stops pid and waits (ctx-bounded) until it has terminated,
// with its children.
func StopAndWait(ctx context.Context, s *System, pid *actor.PID) error {
	p := &replyProc{ch: make(chan any, 1)}
	self, ok := s.AS.ProcessRegistry.Add(p, "stop"+s.AS.ProcessRegistry.NextId())
	if !ok {
		return errors.New("stop: registry refused the watcher")
	}
	defer s.AS.ProcessRegistry.Remove(self)
	target, _ := s.AS.ProcessRegistry.Get(pid)
	target.SendSystemMessage(pid, &actor.Watch{Watcher: self})
	s.AS.Root.Stop(pid)
	select {
	case <-p.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
