package taps

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/actors"
)

// call is the one facade helper that turns a method call into a command to
// an actor and awaits its reply (ctx-bounded, no future or goroutine left
// behind). An actor that is gone answers ErrClosed, unless ctx has ended:
// then ctx's error (an actor made for one call, as a resolve or a
// rendezvous, stops with the caller's ctx, and may be gone before it
// answers); a reply that is an error is returned as the error.
func call[R any](ctx context.Context, s *System, pid *actor.PID, cmd any) (R, error) {
	r, err := callUnless[R](ctx, s, pid, cmd, nil)
	if err != nil && errors.Is(err, ErrClosed) && ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, err
}

// callConn is call to c's connection actor, which also stops waiting once
// that actor has stopped: a command queued as it stopped is dropped
// unanswered (it waited for ctx before), and is ErrClosed.
func callConn[R any](ctx context.Context, c *Connection, cmd any) (R, error) {
	return callUnless[R](ctx, c.sys, c.pid, cmd, c.link.Gone())
}

// callUnless is call that stops waiting when gone is closed (nil: never).
func callUnless[R any](ctx context.Context, s *System, pid *actor.PID, cmd any, gone <-chan struct{}) (R, error) {
	var zero R
	if s.s.IsShutdown() {
		return zero, ErrSystemShutdown
	}
	res, err := actors.AskUnlessDone(ctx, s.s, pid, cmd, gone)
	return callResult[R](res, err)
}

// callWatching is call that stops waiting when pid ends before it answers
// (an actor that stops drops the requests queued for it unanswered): for
// an actor with no Link to wait on, such as a group.
func callWatching[R any](ctx context.Context, s *System, pid *actor.PID, cmd any) (R, error) {
	if s.s.IsShutdown() {
		var zero R
		return zero, ErrSystemShutdown
	}
	return callResult[R](actors.AskWatching(ctx, s.s, pid, cmd))
}

// callResult is the result of a call: an actor gone is ErrClosed, and the
// reply must be an R.
func callResult[R any](res any, err error) (R, error) {
	var zero R
	if err != nil {
		if errors.Is(err, actors.ErrActorGone) {
			return zero, fmt.Errorf("%w", ErrClosed)
		}
		return zero, err
	}
	r, ok := res.(R)
	if !ok {
		return zero, fmt.Errorf("taps: unexpected reply %T", res)
	}
	return r, nil
}

// tell sends a command without waiting.
func tell(s *System, pid *actor.PID, cmd any) { s.s.AS.Root.Send(pid, cmd) }
