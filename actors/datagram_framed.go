package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
)

// startFramedDatagramReader is startDatagramReader for a connectionless
// stack under framers (UDP, UDP-Lite): the framer gets one pass per
// datagram. Each datagram is read whole (never into a framer's read target,
// which may be shorter than it: the rest of the datagram would be lost)
// and goes to the first framer as one input marked as a datagram, with the
// TOS byte it arrived with (stacks.TOSDatagrams: its ECN bits reach every
// message framed from it). What the framer leaves of it (a cut frame) is
// not completed by the next datagram: it is a receive error
// (framerActor.endDatagram). maxRecvRate is applied after each datagram.
func (c *connActor) startFramedDatagramReader(ctx actor.Context) {
	link, target := c.link, c.framers[0]
	root := ctx.ActorSystem().Root
	c.readDatagrams(func(data []byte, tos uint8, hasTOS bool) {
		link.addRaw(len(data)) // the first framer counts it off (doneRaw)
		in := newFramerInput(data, nil, false, nil)
		in.datagram, in.tos, in.hasTOS = true, tos, hasTOS
		root.Send(target, in)
	}, func(err error) { root.Send(target, newFramerInput(nil, nil, true, err)) })
}

// endDatagram ends the datagram m ends (on a connectionless stack every
// datagram is framed on its own): the framer's unconsumed bytes and the
// bytes still due to a message it delivered in part are discarded
// (Instance.EndDatagram), and a message the datagram cut (those bytes, a
// message delivered without its end, or one the framer below cut) becomes
// a receive error wrapping framers.ErrTruncated in its place: the parts
// of it this datagram delivered are withdrawn, so each message of a
// datagram reaches the application whole or as that error. A failure
// about the datagram's content (a frame above the maximum, malformed
// bytes: Instance.EndDatagram's fault) is that error instead, and the
// connection goes on; any other failure ends the connection as on a
// stream. A framer in passthrough has each datagram's bytes end a message.
func (a *framerActor) endDatagram(m *framerInput) {
	left, due, fault := a.inst.EndDatagram(a.f)
	if a.inst.Failed() {
		return
	}
	cut := m.cut
	switch {
	case fault != nil:
		a.failErr, cut = nil, fault // the datagram's, not the connection's
	case cut != nil:
	case left > 0:
		cut = fmt.Errorf("%w: the datagram ended %d bytes into a frame", framers.ErrTruncated, left)
	case due > 0:
		cut = fmt.Errorf("%w: the datagram ended %d bytes before the end of a message", framers.ErrTruncated, due)
	case a.open && a.inst.InPassthrough():
		a.open = false // the datagram is the message: its last piece ends it
		if d := a.delivered; d != nil && len(d.items) > 0 && d.items[len(d.items)-1].MessageID == a.msgID {
			d.items[len(d.items)-1].EndOfMessage = true
		} else {
			a.deliverItem(RecvItem{MessageID: a.msgID, EndOfMessage: true})
		}
		return
	case a.open:
		cut = fmt.Errorf("%w: the datagram ended inside a message", framers.ErrTruncated)
	default:
		return
	}
	if a.open && a.delivered != nil {
		items := a.delivered.items
		k := len(items)
		for k > 0 && items[k-1].MessageID == a.msgID {
			k--
		}
		clear(items[k:])
		a.delivered.items = items[:k]
	} else {
		a.msgID++
	}
	a.open = false
	a.deliverItem(RecvItem{MessageID: a.msgID, Err: cut})
}

// deliverItem adds it to the current input's deliveries, with the
// input's TOS byte.
func (a *framerActor) deliverItem(it RecvItem) {
	if a.delivered == nil {
		a.delivered = framerDeliveries.Get().(*framerDelivered)
	}
	it.TOS, it.HasTOS = a.inTOS, a.inHasTOS
	a.delivered.items = append(a.delivered.items, it)
}

// forwardDatagram passes the messages the framer below delivered from one
// datagram (m) to the next framer: each as an input of that datagram,
// then the datagram's end, which carries the message the framer below
// cut, if any. The next framer frames them as one datagram of its own.
func (c *connActor) forwardDatagram(ctx actor.Context, next *actor.PID, m *framerDelivered) {
	end := newFramerInput(nil, nil, false, nil)
	end.datagram = true
	for _, it := range m.items {
		end.tos, end.hasTOS = it.TOS, it.HasTOS
		if it.Err != nil {
			end.cut = it.Err
			end.cost += recvCost(0) // counted in inflight by the framer below
			continue
		}
		in := newFramerInput(it.Data, it.Meta, false, nil)
		in.inDatagram, in.tos, in.hasTOS, in.early = true, it.TOS, it.HasTOS, it.Early
		in.cost = it.cost()
		ctx.Send(next, in)
	}
	ctx.Send(next, end)
}
