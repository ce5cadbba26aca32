package actors

import (
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
)

// Messages sent in parts (SendPartial). On a byte stream a message sent in
// parts is open from its first part to its last (openPartial): the stream
// cannot interleave messages, so the other messages wait behind it (held)
// and go out, in order, once it ends.
//
// A message fails as a whole. When a part of it fails (a SendError:
// a property the stack cannot honour, the connection's state; or Expired),
// or taps' checks refuse a later part (Abandon), the message ends there:
// its later parts fail too (failed, ErrMessageFailed), the framers drop
// what they hold of it (abortFramed, framers.SendAborter), so nothing of
// it reaches the peer as a complete message, and the messages held behind
// it go on. Its msgLifetime is its first part's (RFC 9622 §9.1.3.1: a
// property of the Message): taps gives the later parts none, so a message
// expires only before its first part is sent, and a byte stream never
// loses a part from the middle of a message. On a datagram stack the parts
// are gathered into one datagram instead (datagram_partial.go).

// ErrMessageFailed: an earlier part of a Message sent in parts failed (a
// SendError or Expired): the Message failed as a whole, and so does every
// later part of it. The error of a later part wraps the earlier part's
// too.
var ErrMessageFailed = errors.New("an earlier part of the message failed")

// msgParts is a connection's state of its messages sent in parts, made
// when it first needs one.
type msgParts struct {
	// held: the sends waiting for the open message (openPartial) to end
	held []*messages.SendMessage
	// failed: on a byte stream, the messages a part of which failed, by id,
	// with that part's error: their later parts fail too, up to the last
	// one, which forgets the message
	failed map[uint64]error
	// dg: on a datagram stack, the messages being gathered into one
	// datagram (datagram_partial.go)
	dg map[uint64]*dgPartial
	// releasing: releaseHeld runs; a message that ends within it leaves
	// the rest to it
	releasing bool
}

// msgParts returns the connection's msgParts, made on first use.
func (c *connActor) msgParts() *msgParts {
	if c.parts == nil {
		c.parts = new(msgParts)
	}
	return c.parts
}

// hold makes m wait for the open message to end.
func (c *connActor) hold(m *messages.SendMessage) {
	p := c.msgParts()
	p.held = append(p.held, m)
}

// releaseHeld sends the messages that waited for a message sent in parts
// to end, in the order they came. One of them may open a message of its
// own: its parts among them go on, the others wait again, and when it ends
// (in this loop) the ones it made wait go first, those after them next.
func (c *connActor) releaseHeld(ctx actor.Context) {
	p := c.parts
	if p == nil || p.releasing {
		return
	}
	p.releasing = true
	defer func() { p.releasing = false }()
	for c.openPartial == 0 && len(p.held) > 0 {
		held := p.held
		p.held = nil
		for i, m := range held {
			if c.openPartial == 0 && len(p.held) > 0 {
				// a message opened and ended in this pass: the messages it
				// held again came before the rest of this pass
				p.held = append(p.held, held[i:]...)
				break
			}
			c.send(ctx, m) // held again while another message is open
		}
	}
}

// failedEarlier fails m when an earlier part of its message failed, and
// reports whether it did; the message's last part (or its Abandon) forgets
// it.
func (c *connActor) failedEarlier(m *messages.SendMessage) bool {
	err, ok := c.parts.failed[m.MessageID]
	if !ok {
		return false
	}
	if m.EndOfMessage {
		delete(c.parts.failed, m.MessageID)
	}
	if !m.Abandon {
		c.sendFailed(m, fmt.Errorf("%w: %w", ErrMessageFailed, err))
	}
	return true
}

// partFailed: send m failed with err before the connection took it. When
// m is a part of a message sent in parts, the message fails as a whole:
// its later parts fail too, and, when it was open, the framers drop what
// they hold of it and the messages held behind it go on.
func (c *connActor) partFailed(ctx actor.Context, m *messages.SendMessage, err error) {
	c.noteFailedPart(m, err)
	if c.openPartial != 0 && m.MessageID == c.openPartial {
		c.openPartial = 0
		c.abortFramed(ctx)
		c.releaseHeld(ctx)
	}
}

// noteFailedPart records that part m failed with err, so that the later
// parts of its message fail too.
func (c *connActor) noteFailedPart(m *messages.SendMessage, err error) {
	if c.gathersParts() {
		c.datagramPartFailed(m, err)
		return
	}
	if !m.EndOfMessage {
		c.markFailed(m.MessageID, err)
	}
}

// markFailed records message id as failed with err (the first failure
// stays).
func (c *connActor) markFailed(id uint64, err error) {
	p := c.msgParts()
	if p.failed == nil {
		p.failed = map[uint64]error{}
	}
	if _, ok := p.failed[id]; !ok {
		p.failed[id] = err
	}
}

// abandon ends message m.MessageID, which failed in Connection.Send after
// some of its parts were handed over (m.Abandon): the connection drops
// what it holds of it. It waits in line as the message's parts do, so it
// comes after them.
func (c *connActor) abandon(ctx actor.Context, m *messages.SendMessage) {
	switch {
	case c.state == Establishing:
		c.pending = append(c.pending, m)
		return
	case c.early:
		c.heldEarly = append(c.heldEarly, m)
		return
	case c.gathersParts():
		if c.parts != nil {
			delete(c.parts.dg, m.MessageID) // its gathered parts never leave
		}
		return
	case c.openPartial != 0 && m.MessageID != c.openPartial:
		c.hold(m)
		return
	case c.openPartial == m.MessageID:
		c.openPartial = 0
		c.abortFramed(ctx)
		c.releaseHeld(ctx)
	}
}

// abortFramed tells the framers that the open message failed before its
// last part: each drops what it holds of it (framerActor.abortSend). The
// abort follows the message's parts down the stack. Without framers the
// parts written stay: a byte stream has no message boundaries then.
func (c *connActor) abortFramed(ctx actor.Context) {
	if len(c.framers) > 0 {
		c.postTopFramer(ctx, &framerSend{abort: true})
	}
}
