package actors

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
)

// Config configures a System.
type Config struct {
	// Logger receives gotaps' and protoactor's logs. Nil discards them.
	Logger *slog.Logger
	// Tracer, when set, gets every trace record (state changes, racing and
	// message events). It is called from actor goroutines and must not
	// block.
	Tracer func(*messages.TraceRecord)
}

// System is one protoactor ActorSystem with gotaps' root actor. It is safe
// for concurrent use.
type System struct {
	AS     *actor.ActorSystem
	Root   *actor.PID
	Logger *slog.Logger
	tracer func(*messages.TraceRecord)
	nextID atomic.Uint64
	down   atomic.Bool
	// raceCache remembers racing winners per remote set (racecache.go).
	raceCache raceCache
}

// NewSystem starts an actor system and its root actor.
func NewSystem(cfg Config) *System {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	protoLogger := logger.With("component", "protoactor")
	as := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return protoLogger }),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	s := &System{AS: as, Logger: logger, tracer: cfg.Tracer}
	props := actor.PropsFromProducer(func() actor.Actor { return newRootActor(s) },
		actor.WithGuardian(supervision.Guardian()),
		actor.WithSupervisor(supervision.Strategy(supervision.Group)))
	s.Root = as.Root.SpawnPrefix(props, "taps")
	return s
}

// NewID returns a fresh connection/group/listener id.
func (s *System) NewID() uint64 { return s.nextID.Add(1) }

// Tracing reports whether a tracer is set.
func (s *System) Tracing() bool { return s.tracer != nil }

func (s *System) trace(r *messages.TraceRecord) {
	if s.tracer == nil {
		return
	}
	if r.TimeUnixNano == 0 {
		r.TimeUnixNano = time.Now().UnixNano()
	}
	s.tracer(r)
}

// ErrShutdown is returned for requests made after Shutdown began.
var ErrShutdown = errors.New("taps system is shut down")

// Shutdown closes every listener and connection the system owns (gracefully
// while ctx allows, then by abort), stops the root actor and waits for it.
func (s *System) Shutdown(ctx context.Context) error {
	if !s.down.CompareAndSwap(false, true) {
		return nil
	}
	_, err := Ask(ctx, s, s.Root, &messages.ShutdownSystem{})
	if err != nil {
		// out of time: abort whatever is left
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = Ask(actx, s, s.Root, &messages.ShutdownSystem{Abort: true})
		cancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serr := StopAndWait(sctx, s, s.Root)
	s.AS.Shutdown()
	return errors.Join(err, serr)
}

// IsShutdown reports whether Shutdown was called.
func (s *System) IsShutdown() bool { return s.down.Load() }

// ActorCount is the number of processes registered in the actor system
// (actors, and reply processes of calls in progress). Tests use it to
// check that nothing is left behind.
func (s *System) ActorCount() int {
	n := 0
	for _, m := range s.AS.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}
