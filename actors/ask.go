package actors

import (
	"context"
	"errors"
	"sync"

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
// ErrActorGone. A reply already there when ctx ends is returned; later
// replies go to dead letters.
func Ask(ctx context.Context, s *System, pid *actor.PID, req any) (any, error) {
	return AskUnlessDone(ctx, s, pid, req, nil)
}

// AskUnlessDone is Ask that also stops waiting when done is closed (nil:
// never), e.g. a connection's Link.Done, since a connection that has ended
// answers no more commands: a reply given before the end (a removal that
// aborted the connection) is still returned; an end without a reply gives
// ErrActorGone.
func AskUnlessDone(ctx context.Context, s *System, pid *actor.PID, req any, done <-chan struct{}) (any, error) {
	return ask(ctx, s, pid, req, done, false)
}

// AskWatching is Ask that watches pid while it waits: an actor that ends
// before it answers (a request queued as it stopped is dropped unanswered)
// gives ErrActorGone at once instead of a wait until ctx ends.
func AskWatching(ctx context.Context, s *System, pid *actor.PID, req any) (any, error) {
	return ask(ctx, s, pid, req, nil, true)
}

func ask(ctx context.Context, s *System, pid *actor.PID, req any, done <-chan struct{}, watch bool) (any, error) {
	p := &replyProc{ch: make(chan any, 1)}
	self, ok := s.AS.ProcessRegistry.Add(p, "ask"+s.AS.ProcessRegistry.NextId())
	if !ok {
		return nil, errors.New("ask: registry refused the reply process")
	}
	defer s.AS.ProcessRegistry.Remove(self)
	watching := false
	if watch {
		// before the request: a system message, taken before it; an actor
		// stopping or gone answers it with Terminated at once
		target, _ := s.AS.ProcessRegistry.Get(pid)
		target.SendSystemMessage(pid, &actor.Watch{Watcher: self})
		watching = true
		defer func() {
			if watching { // still running: it would tell a gone watcher of its end
				target.SendSystemMessage(pid, &actor.Unwatch{Watcher: self})
			}
		}()
	}
	s.AS.Root.RequestWithCustomSender(pid, req, self)
	reply := func(r any) (any, error) {
		switch r.(type) {
		case *actor.DeadLetterResponse, *actor.Terminated:
			watching = false
			return nil, ErrActorGone
		}
		if err, ok := r.(error); ok {
			return nil, err
		}
		return r, nil
	}
	select {
	case r := <-p.ch:
		return reply(r)
	case <-ctx.Done():
		// a reply that is there already counts: select picks at random
		// among ready cases, and a caller told ctx's error would not
		// know that the command took effect (a connection or a
		// rendezvous started for nobody)
		select {
		case r := <-p.ch:
			return reply(r)
		default:
		}
		return nil, ctx.Err()
	case <-done:
		select {
		case r := <-p.ch: // answered, then ended
			return reply(r)
		default:
			return nil, ErrActorGone
		}
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

// StartClaim settles who ends an actor whose start request may go
// unanswered (the caller's ctx ended as the answer came, which then goes to
// dead letters): the actor claims it as it starts, before it opens
// anything; a caller left without an answer abandons it. Whichever comes
// second learns of the first: an abandon after the claim returns the actor
// (the caller ends it and waits), a claim after the abandon returns the
// caller's error (the actor ends at once, having opened nothing).
type StartClaim struct {
	mu        sync.Mutex
	pid       *actor.PID
	abandoned error
}

// Claim is the actor's side; it fails with the caller's error when the
// caller has abandoned the start already.
func (c *StartClaim) Claim(pid *actor.PID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abandoned != nil {
		return c.abandoned
	}
	c.pid = pid
	return nil
}

// Abandon is the caller's side: the actor that claimed the start, or nil
// (the actor, should it start later, fails its Claim with err).
func (c *StartClaim) Abandon(err error) *actor.PID {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pid == nil && c.abandoned == nil {
		c.abandoned = err
	}
	return c.pid
}
