package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
)

// msgLifetime timer (RFC 9622 §9.1.3.1): a message that waits (queued
// before Ready, or behind a write that does not complete) is Expired when
// its lifetime passes, not only when the queue moves again.

// lifeTimer is the one timer of a connection's queued lifetimes: it fires
// at the earliest deadline of a message that waits.
type lifeTimer struct {
	t   *time.Timer
	at  time.Time
	gen uint64
}

// lifetimeTick is the lifeTimer's message to its connection.
type lifetimeTick struct{ gen uint64 }

// deadlineOf returns when m's msgLifetime passes; ok is false when it has
// none.
func deadlineOf(m *messages.SendMessage) (at time.Time, ok bool) {
	if m == nil || m.Props == nil || m.Props.Lifetime <= 0 || m.Queued.IsZero() {
		return time.Time{}, false
	}
	return m.Queued.Add(m.Props.Lifetime), true
}

// armLifetime makes the timer fire at at, unless it fires earlier already.
func (c *connActor) armLifetime(ctx actor.Context, at time.Time) {
	if c.life == nil {
		c.life = new(lifeTimer)
	}
	lt := c.life
	if lt.t != nil && !at.Before(lt.at) {
		return
	}
	if lt.t != nil {
		lt.t.Stop()
	}
	lt.gen++
	lt.at = at
	gen, root, self := lt.gen, ctx.ActorSystem().Root, ctx.Self()
	// just past the deadline: a message expires once its lifetime is exceeded
	d := max(time.Until(at), 0) + time.Millisecond
	lt.t = time.AfterFunc(d, func() { root.Send(self, &lifetimeTick{gen: gen}) })
}

// stopLifetime stops the timer (the connection ends).
func (c *connActor) stopLifetime() {
	if c.life != nil && c.life.t != nil {
		c.life.t.Stop()
		c.life.t = nil
	}
}

// lifetimeTicked reports Expired for the waiting messages whose lifetime
// passed (those queued before Ready, and the whole messages queued for
// writing, for this turn or a group member's next: dropExpired), and arms
// the timer for the next deadline.
func (c *connActor) lifetimeTicked(ctx actor.Context, m *lifetimeTick) {
	if c.life == nil || m.gen != c.life.gen || c.life.t == nil {
		return
	}
	c.life.t = nil
	now := time.Now()
	var next time.Time
	later := func(at time.Time) {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	kept := c.pending[:0]
	for _, sm := range c.pending {
		if at, ok := deadlineOf(sm); ok {
			if now.Sub(sm.Queued) > sm.Props.Lifetime {
				// sm is not touched after its event: its sender may reuse it
				if c.sys.Tracing() {
					c.sys.trace(&messages.TraceRecord{Kind: "expired", Event: "Expired", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: sm.SendID})
				}
				c.link.sendDone([]uint64{sm.SendID}, len(sm.Data), ErrExpired)
				c.noteFailedPart(sm, ErrExpired) // the first part of a message sent in parts: the rest fails too
				continue
			}
			later(at)
		}
		kept = append(kept, sm)
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	// the write queue, and what a group member's turn set aside for its
	// next turn (wqRest: it waits too, while the turn's write may stall)
	for _, q := range []*[]writeItem{&c.wq, &c.wqRest} {
		if len(*q) == 0 {
			continue
		}
		*q = c.dropExpired(*q)
		for _, w := range *q {
			if w.send != nil && (movable(w) || c.datagram) {
				if at, ok := deadlineOf(w.send.msg); ok {
					later(at)
				}
			}
		}
	}
	if !next.IsZero() {
		c.armLifetime(ctx, next)
	}
	c.progressClose(ctx)
}
