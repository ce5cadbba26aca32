package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// The establishment's bounds once the race is over, and Initiate's ctx.
//
// The establishment timeout (ConnectionConfig.EstablishmentTimeout) bounds
// the whole establishment, up to Ready. The preconnection actor's timer
// covers resolution and racing, and the racer then lists its attempts; but
// the preconnection ends once the race is won, while a framer's handshake
// (RFC 9623 §6: Ready waits for every framer's MakeConnectionReady) may go
// on. The connection therefore keeps a deadline of its own, armed when it
// first spawns a preconnection and stopped at Ready: when it passes with
// the race over and the connection still Establishing, the establishment
// fails with ErrEstablishmentTimeout.
//
// When Initiate's ctx ends during the race, the connection is aborted with
// the ctx's error. Rather than stopping the racer with its attempts, the
// connection asks it to lose now (establishTimeout carrying the cause),
// and ends with the failure that lists them, as a timeout does.

// establishDeadline: the connection's establishment deadline (of
// generation gen) passed.
type establishDeadline struct{ gen uint64 }

// armEstablishDeadline starts the deadline of an establishment, unless one
// runs already (a framer's failure races the other candidates again within
// the same establishment).
func (c *connActor) armEstablishDeadline(ctx actor.Context) {
	d := c.spec.cfg.EstablishmentTimeout
	if d <= 0 || c.estTimer != nil {
		return
	}
	c.estGen++
	gen := c.estGen
	root, self := ctx.ActorSystem().Root, ctx.Self()
	c.estTimer = time.AfterFunc(d, func() { root.Send(self, &establishDeadline{gen: gen}) })
}

// stopEstablishDeadline ends the deadline (Ready, or the connection ends).
func (c *connActor) stopEstablishDeadline() {
	if c.estTimer != nil {
		c.estTimer.Stop()
		c.estTimer = nil
		c.estGen++
	}
}

// establishDeadlinePassed fails an establishment whose race is over and
// whose framers are not all ready yet; while a preconnection still runs,
// its own timer reports the failure with the attempts.
func (c *connActor) establishDeadlinePassed(ctx actor.Context, m *establishDeadline) {
	if m.gen != c.estGen || c.state != Establishing || c.preconn != nil {
		return
	}
	c.estTimer = nil
	f := &EstablishmentFailure{Err: ErrEstablishmentTimeout, Report: c.report}
	c.dropTransport(ctx)
	c.failPending(f)
	c.apply(InEstablishmentFailed, f)
	c.end(ctx)
}

// abortWhileRacing handles an abort for Initiate's ended ctx while the
// race runs: the racer is asked to lose with the ctx's error, and the
// connection ends with the failure listing the attempts. It reports
// whether it took the abort.
func (c *connActor) abortWhileRacing(ctx actor.Context, cause error) bool {
	if c.preconn == nil || c.state != Establishing || c.everReady || c.t != nil ||
		!(errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded)) {
		return false
	}
	if c.abortCause == nil {
		c.abortCause = cause
		ctx.Send(c.preconn, &establishTimeout{err: cause})
	}
	return true
}
