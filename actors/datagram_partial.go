package actors

import (
	"fmt"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
)

// dgPartial is a Message sent in parts (SendPartial) on a datagram stack,
// gathered until its last part: a datagram is a whole message, so its parts
// leave together as one. Under framers (UDP with a framer) the gathered
// Message goes to them whole, as one Message: each Message a framer sends
// leaves as one datagram, and its parts, framed one by one, would leave as
// several (gathersParts).
type dgPartial struct {
	data []byte // the parts so far (copied: each part's Sent is out)
	err  error  // set when a part failed: the rest of the message fails too
}

// gatherDatagramPart takes a part of a message on a datagram stack. A part
// before the last is copied and gets its Sent event at once (its Send must
// return for the application to send the next part); the last one carries
// the message's earlier parts in front of its own data (bufs) and is
// written as one datagram. A message that grows beyond the stack's largest
// datagram fails with a TooLargeError, and so do its later parts (wrapping
// ErrMessageFailed). It reports whether m was taken (nothing more to do),
// else the bufs to write.
func (c *connActor) gatherDatagramPart(m *messages.SendMessage) (taken bool, bufs [][]byte) {
	var p *dgPartial
	if c.parts != nil {
		p = c.parts.dg[m.MessageID]
	}
	if p == nil && m.EndOfMessage {
		return false, nil
	}
	if p == nil {
		p = c.newDatagramPartial(m.MessageID)
	}
	if m.EndOfMessage {
		delete(c.parts.dg, m.MessageID)
	}
	if p.err != nil {
		c.sendFailed(m, fmt.Errorf("%w: %w", ErrMessageFailed, p.err)) // p is out of c.parts.dg when m ends it
		return true, nil
	}
	if c.sendMax > 0 && len(p.data)+len(m.Data) > c.sendMax {
		p.err = &framers.TooLargeError{Size: uint64(len(p.data) + len(m.Data)), Max: uint64(c.sendMax)}
		p.data = nil
		c.sendFailed(m, p.err)
		return true, nil
	}
	if m.EndOfMessage {
		return false, [][]byte{p.data, m.Data}
	}
	p.data = append(p.data, m.Data...)
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "sent", Event: "Sent", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID, Bytes: int64(len(m.Data))})
	}
	c.link.sendDone([]uint64{m.SendID}, len(m.Data), nil)
	return true, nil
}

// gathersParts reports whether the connection gathers the parts of a
// Message sent in parts into one datagram: on a connectionless stack (UDP,
// UDP-Lite), with or without framers.
func (c *connActor) gathersParts() bool { return c.datagram || c.connectionless }

// datagramPartFailed records that a part of a message on a datagram stack
// failed (a SendError, or Expired): the parts after it fail too, rather
// than leave as a datagram with a piece missing. The last part forgets
// the message.
func (c *connActor) datagramPartFailed(m *messages.SendMessage, err error) {
	if !c.gathersParts() {
		return
	}
	if m.EndOfMessage {
		if c.parts != nil {
			delete(c.parts.dg, m.MessageID)
		}
		return
	}
	var p *dgPartial
	if c.parts != nil {
		p = c.parts.dg[m.MessageID]
	}
	if p == nil {
		p = c.newDatagramPartial(m.MessageID)
	}
	if p.err == nil {
		p.err, p.data = err, nil
	}
}

// newDatagramPartial starts gathering message id.
func (c *connActor) newDatagramPartial(id uint64) *dgPartial {
	ps := c.msgParts()
	if ps.dg == nil {
		ps.dg = map[uint64]*dgPartial{}
	}
	p := &dgPartial{}
	ps.dg[id] = p
	return p
}
