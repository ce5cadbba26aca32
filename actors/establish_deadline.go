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

// establishState is the establishment under way: the preconnection
// running (nil once it reported), an abort waiting for its failure, the
// deadline of the whole establishment. It goes at Ready.
type establishState struct {
	preconn    *actor.PID
	abortCause error
	timer      *time.Timer
}

// establishDeadline: the deadline of the establishment est passed.
type establishDeadline struct{ est *establishState }

// armEstablishDeadline starts the deadline of the establishment c.est,
// unless one runs already (a framer's failure races the other candidates again within
// the same establishment).
func (c *connActor) armEstablishDeadline(ctx actor.Context) {
	d, est := c.spec.cfg.EstablishmentTimeout, c.est
	if d <= 0 || est.timer != nil {
		return
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	est.timer = time.AfterFunc(d, func() { root.Send(self, &establishDeadline{est: est}) })
}

// endEstablishment drops the establishment's state and stops its deadline
// (Ready, or the connection ends).
func (c *connActor) endEstablishment() {
	if est := c.est; est != nil {
		if est.timer != nil {
			est.timer.Stop()
		}
		c.est = nil
	}
}

// establishDeadlinePassed fails an establishment whose race is over and
// whose framers are not all ready yet; while a preconnection still runs,
// its own timer reports the failure with the attempts.
func (c *connActor) establishDeadlinePassed(ctx actor.Context, m *establishDeadline) {
	if m.est != c.est || c.state != Establishing || c.est.preconn != nil {
		return
	}
	c.est.timer = nil
	f := &EstablishmentFailure{Err: ErrEstablishmentTimeout, Report: c.report}
	if c.everReady && c.reestablish(ctx, f) {
		return // a re-establishment attempt failed: the next one follows the backoff
	}
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
	if c.est == nil || c.est.preconn == nil || c.state != Establishing || c.everReady || c.t != nil ||
		!(errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded)) {
		return false
	}
	if c.est.abortCause == nil {
		c.est.abortCause = cause
		ctx.Send(c.est.preconn, &establishTimeout{err: cause})
	}
	return true
}
