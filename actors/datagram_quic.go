package actors

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/quic-go/quic-go"
)

// Unreliable messages on QUIC (RFC 9622 perMsgReliability, msgReliable,
// msgOrdered; RFC 9221 datagrams). A QUIC connection selected with
// perMsgReliability Require or Prefer enables datagrams (the taps layer
// sets stacks.Options.QUICDatagrams). A message sent with msgReliable=false
// AND msgOrdered=false leaves as one DATAGRAM frame: it may be lost and
// may overtake (or be overtaken by) the stream's messages. msgReliable and
// msgOrdered are permissions, not demands (RFC 9622 §9.1.3.3, §9.1.3.7),
// so every other message goes on the stream, reliably and in order: an
// unreliable but ordered one (a datagram could not keep its order), one
// larger than a datagram (stacks.ErrDatagramTooLarge), one not ending its
// message, a Final one, and any when the peer did not enable datagrams
// (stacks.ErrDatagramsNotNegotiated). On every other stack msgOrdered=false
// is honoured trivially: TCP, TLS and QUIC streams deliver in order, UDP
// and UDP-Lite deliver datagrams as they come.
//
// Received datagrams are whole messages of the connection (one each), with
// no framer: they are delivered between the stream's messages, never
// inside one (while a stream message is only partly received they wait for
// its end; on a connection without a framer the stream is one message, so
// they wait for the stream to end unless they come before any stream data).
//
// Datagrams belong to the QUIC session, not to a stream: every connection
// of the group (its first stream, its Clones, the peer's streams received
// into it) may send them, and each runs a datagram reader, but only one
// reads at a time: the oldest live stream Transport (stacks: the others'
// ReceiveDatagram waits for its turn). When that stream's Transport closes
// or aborts, or its connection stops receiving (its Close begins: it
// discards what arrives while the close lingers for the peer's end of
// stream; or the peer's end of stream comes: Receive fails from then on;
// stopReceivingDatagrams), the next oldest one reads, so the datagrams
// reach that connection's actor and the group keeps receiving unreliable
// messages; only with no stream left are they dropped.
//
// Each datagram sent or received is traced (System tracer) as Kind
// "datagram", Event "Sent" or "Received".

// datagramMsgBit marks the message ids of received datagrams: they never
// equal a stream message's.
const datagramMsgBit = 1 << 63

// quicDgrams is the QUIC datagram state of a connection that has them
// (most have not: a pointer keeps connActor small).
type quicDgrams struct {
	dgram      stacks.Datagrams
	stop       context.CancelFunc // ends the datagram reader
	stopped    context.Context    // done once stop was called
	held       []RecvItem         // received while a stream message was open
	streamOpen bool               // the stream's last delivered piece left its message open
}

// startQUICDatagrams starts the datagram reader of a transport that has
// QUIC datagrams negotiated with the peer. It waits in ReceiveDatagram
// until its stream Transport's turn to read the session's datagrams comes.
func (c *connActor) startQUICDatagrams(ctx actor.Context) {
	dg, ok := c.t.(stacks.Datagrams)
	if !ok {
		return
	}
	if ds, ok := c.t.(stacks.DatagramSupport); !ok || !ds.DatagramsNegotiated() {
		return
	}
	c.qd = &quicDgrams{dgram: dg}
	rctx, cancel := context.WithCancel(context.Background())
	c.qd.stop, c.qd.stopped = cancel, rctx
	link, gen := c.link, fromTransport{c.tgen}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	go func() {
		var id uint64
		for {
			if !link.waitReadCredit() {
				return
			}
			data, err := dg.ReceiveDatagram(rctx)
			if err != nil {
				return // the connection or the actor ended: the stream reader reports it
			}
			id++
			link.addInflight(recvCost(len(data)))
			root.Send(self, &datagramIn{fromTransport: gen, item: RecvItem{MessageID: id | datagramMsgBit, Data: data, EndOfMessage: true}, quic: true})
		}
	}()
}

// stopQUICDatagrams ends the datagram reader.
func (c *connActor) stopQUICDatagrams() {
	if c.qd != nil {
		c.qd.stop()
		c.qd = nil
	}
}

// stopReceivingDatagrams: nothing more reaches the application from the
// connection (Close: it discards what arrives while it lingers for the
// peer's end of stream; the peer's end of stream: Receive fails from then
// on, while a half-closed connection still sends). Its stream Transport
// gives up its turn to read the session's datagrams
// (stacks.DatagramTurn), so that the next oldest member of the session
// reads them instead of this one dropping them until its transport
// closes; its datagram reader ends (ReceiveDatagram fails), and it may
// still send datagrams.
func (c *connActor) stopReceivingDatagrams() {
	if c.qd == nil {
		return
	}
	if dt, ok := c.qd.dgram.(stacks.DatagramTurn); ok {
		dt.StopReceivingDatagrams()
	}
}

// quicSessionEnd returns, for a half-closed connection with QUIC datagrams
// (watchPeerReset), a wait for the end of its session, nil without
// datagrams: after the peer's graceful end of the stream (its STOP_SENDING
// after its FIN) this side may still send datagrams on the session, so
// the connection ends with the session. The wait ends (false) once the
// datagram reader stops: the connection has ended or lost its transport.
// It reports the session's end as stacks' WaitPeerReset does: nil when the
// peer closed it without error, the error otherwise.
func (c *connActor) quicSessionEnd() func() (ended bool, err error) {
	qc, ok := c.t.(interface{ Conn() *quic.Conn })
	if c.qd == nil || !ok {
		return nil
	}
	sess, stopped := qc.Conn().Context(), c.qd.stopped
	return func() (bool, error) {
		select {
		case <-sess.Done():
		case <-stopped.Done():
			return false, nil
		}
		err := context.Cause(sess)
		var ae *quic.ApplicationError
		if errors.As(err, &ae) {
			switch {
			case !ae.Remote:
				return false, nil // this side closed it: its connection knows
			case ae.ErrorCode == 0:
				return true, nil
			}
		}
		return true, err
	}
}

// quicDatagramIn delivers a received QUIC datagram now, or after the stream
// message being received.
func (c *connActor) quicDatagramIn(it RecvItem) {
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "datagram", Event: "Received", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: it.MessageID &^ datagramMsgBit, Bytes: int64(len(it.Data))})
	}
	if c.qd != nil && c.qd.streamOpen {
		c.qd.held = append(c.qd.held, it)
		return
	}
	c.deliver([]RecvItem{it})
}

// streamDelivered notes whether the stream's last delivered piece left a
// message open, and delivers the datagrams that waited for it to end.
func (c *connActor) streamDelivered(items []RecvItem) {
	if c.qd == nil || len(items) == 0 {
		return
	}
	c.qd.streamOpen = !items[len(items)-1].EndOfMessage
	if !c.qd.streamOpen && len(c.qd.held) > 0 {
		held := c.qd.held
		c.qd.held = nil
		c.deliver(held)
	}
}

// flushHeldDatagrams delivers the held datagrams once the stream ended.
func (c *connActor) flushHeldDatagrams() {
	if c.qd == nil {
		return
	}
	c.qd.streamOpen = false
	if len(c.qd.held) > 0 {
		held := c.qd.held
		c.qd.held = nil
		c.deliver(held)
	}
}

// sendQUICDatagram sends m as one QUIC datagram when it may go as one: it
// reports whether m was handled (sent, or failed); false sends it on the
// stream.
func (c *connActor) sendQUICDatagram(m *messages.SendMessage) bool {
	p := m.Props
	if c.qd == nil || p == nil || p.Reliable || p.Ordered || p.Final || !m.EndOfMessage {
		return false
	}
	err := c.qd.dgram.SendDatagram(m.Data)
	switch {
	case errors.Is(err, stacks.ErrDatagramTooLarge), errors.Is(err, stacks.ErrDatagramsNotNegotiated):
		return false // on the stream: unreliable delivery is a permission
	case err != nil:
		c.sendFailed(m, err)
		return true
	}
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "datagram", Event: "Sent", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID, Bytes: int64(len(m.Data))})
		c.sys.trace(&messages.TraceRecord{Kind: "sent", Event: "Sent", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID, Bytes: int64(len(m.Data))})
	}
	// m is not touched after its event: its sender may reuse it
	c.link.sendDone([]uint64{m.SendID}, len(m.Data), nil)
	return true
}
