package actors

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
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
// An accepted connection (a Listener's, or a peer's stream of a
// multistreaming session) has no race, but its framers may wait for the
// peer before MakeConnectionReady (a handshake): a peer that connects and
// sends nothing would hold the connection, its file descriptor and its
// place in the listener's accept backlog for ever. Its setup is bounded
// therefore too, by the same deadline, armed when its framers have started
// (only when they are not all ready by then: a connection without framers
// is Ready at once) and stopped at Ready: by the establishment timeout
// when set, else by DefaultAcceptSetupTimeout (AcceptSetupTimeout). When
// it passes, the connection, never delivered, ends without an event to
// the application (traced: Kind "listener", Event "SetupTimeout"), its
// transport aborted and its backlog slot released. A rendezvous
// connection is not bounded here: its rendezvous actor's timer and
// Rendezvous's ctx bound it until Ready.
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
	// began is when the first race of this establishment started: a race
	// run again after a framer failed (retryNextCandidate) keeps its
	// attempts' offsets and the establishment timeout from there
	began time.Time
	// prior are the attempts of the races before the running one (their
	// winner's framer failed), for the report and the failure
	prior     []*messages.EstablishmentAttempt
	priorErrs []AttemptError
	// setDuring names the properties set while the race dialed: its
	// sockets were made with the options of before (the race reads the
	// configuration it was started with), so the winner gets them as it
	// is handed over (applySetDuring)
	setDuring []string
	// a tentative 0-RTT transport's (racer.go): the attempt it is of,
	// earlyFirst the first message sent on it as early data (its Sent
	// waits for the win), tentLost why it failed, once it did (told to
	// the racer)
	tentAttempt int
	earlyFirst  *messages.SendMessage
	tentLost    error
}

// withPrior puts the attempts of the earlier races of this establishment
// before those of f, the last race's failure.
func (est *establishState) withPrior(f *EstablishmentFailure) {
	if est == nil || len(est.prior) == 0 {
		return
	}
	f.Attempts = append(slices.Clone(est.priorErrs), f.Attempts...)
	if f.Report == nil {
		f.Report = &messages.EstablishmentReport{}
	}
	f.Report.Attempts = append(slices.Clone(est.prior), f.Report.Attempts...)
}

// establishDeadline: the deadline of the establishment est passed.
type establishDeadline struct{ est *establishState }

// DefaultAcceptSetupTimeout bounds the setup of an accepted connection
// (its framers' handshakes, up to ConnectionReceived) when its
// Preconnection sets no establishment timeout: 10 s, as the TLS or QUIC
// handshake before it (stacks.Options.HandshakeTimeout, which the
// listener sets to the same bound: AcceptSetupTimeout).
const DefaultAcceptSetupTimeout = 10 * time.Second

// AcceptSetupTimeout is the bound on the setup of an accepted connection
// whose establishment timeout is d: d when set (> 0), else
// DefaultAcceptSetupTimeout.
func AcceptSetupTimeout(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return DefaultAcceptSetupTimeout
}

// armEstablishDeadline starts the deadline of the establishment c.est,
// unless one runs already (a framer's failure races the other candidates again within
// the same establishment).
func (c *connActor) armEstablishDeadline(ctx actor.Context) {
	d, est := c.spec.cfg.EstablishmentTimeout, c.est
	if c.spec.passive != nil {
		d = AcceptSetupTimeout(d)
	}
	if d <= 0 || est.timer != nil {
		return
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	est.timer = time.AfterFunc(d, func() { root.Send(self, &establishDeadline{est: est}) })
}

// armSetupDeadline bounds the setup of an accepted connection whose
// framers, started, are not all ready yet (AcceptSetupTimeout); a
// rendezvous connection is bounded by its rendezvous instead.
func (c *connActor) armSetupDeadline(ctx actor.Context) {
	if c.spec.rendezvous || c.est != nil {
		return
	}
	if g := c.spec.listenGate; g != nil && c.spec.acceptSlot && !g.inSetup(ctx.Self()) {
		// the listener stopped: it would never deliver this connection
		ctx.Send(ctx.Self(), &messages.AbortConnection{Err: errListenerStopped})
		return
	}
	c.est = new(establishState)
	c.armEstablishDeadline(ctx)
	if h := testHookSetupArmed.Load(); h != nil && c.est.timer != nil {
		(*h)()
	}
}

// testHookSetupArmed, when set, runs when an accepted connection arms its
// setup deadline.
var testHookSetupArmed atomic.Pointer[func()]

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
	if c.spec.passive != nil && c.sys.Tracing() {
		rec := &messages.TraceRecord{Kind: "listener", Event: "SetupTimeout", ConnectionId: c.spec.id,
			GroupId: c.spec.groupID, Stack: c.stack, Error: ErrEstablishmentTimeout.Error()}
		if c.local != nil {
			rec.Local = c.local.String()
		}
		if c.remote != nil {
			rec.Remote = c.remote.String()
		}
		c.sys.trace(rec)
	}
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
	if c.est == nil || c.est.preconn == nil || c.state != Establishing || c.everReady || (c.t != nil && !c.tentative) ||
		!(errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded)) {
		return false
	}
	if c.est.abortCause == nil {
		c.est.abortCause = cause
		ctx.Send(c.est.preconn, &establishTimeout{err: cause})
	}
	return true
}
