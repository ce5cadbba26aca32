package actors

import (
	"fmt"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// Direction is what a connection's direction Selection Property (RFC 9622
// §6.2.16) lets it do.
type Direction uint8

const (
	Bidirectional Direction = iota
	// SendOnly: this side only sends (UnidirectionalSend).
	SendOnly
	// ReceiveOnly: this side only receives (UnidirectionalReceive).
	ReceiveOnly
)

// Sends and Receives report what the direction allows.
func (d Direction) Sends() bool    { return d != ReceiveOnly }
func (d Direction) Receives() bool { return d != SendOnly }

// DirectionOf reads the direction property of a connection's effective
// properties (Bidirectional when unset).
func DirectionOf(p *messages.Properties) Direction {
	switch p.GetValues()["direction"].GetEnumValue() {
	case "UnidirectionalSend":
		return SendOnly
	case "UnidirectionalReceive":
		return ReceiveOnly
	}
	return Bidirectional
}

// Errors of the operations a unidirectional connection does not allow.
// Both unwrap to ErrNotAllowed.
var (
	ErrSendOnly    = fmt.Errorf("%w: the connection only sends (direction UnidirectionalSend)", ErrNotAllowed)
	ErrReceiveOnly = fmt.Errorf("%w: the connection only receives (direction UnidirectionalReceive)", ErrNotAllowed)
)

// startDirection closes, once the connection is Ready, the direction of
// the transport it does not use:
//   - receive only: its sending side is ended as a Final message would
//     end it (CloseWrite: TCP and Unix FIN, TLS close_notify then FIN, the
//     QUIC stream's FIN; nothing on UDP), so the peer reads the end of the
//     stream at once; the connection then closes when the peer ends its
//     stream too. A QUIC unidirectional stream the peer opened has no
//     sending side to end;
//   - send only: what arrives is discarded. Dial's QUIC stream, while
//     nothing was written on it, is exchanged for a unidirectional stream
//     (stacks.UniStreams), and a stream Clone opened is one already (see
//     openStream); otherwise a transport that can end its receive side
//     (CloseRead: TCP and Unix shutdown(SHUT_RD), the QUIC stream's
//     STOP_SENDING) does: the reader then reads the end of the stream and
//     stops. Linux does not tell a TCP peer, and what a TCP peer still
//     sends stays unread, so that closing resets the connection; a Unix
//     peer's writes fail with EPIPE, a QUIC peer's with a stream error.
//     TLS keeps reading (its post-handshake records) and discards.
//
// A transport that only receives (a QUIC unidirectional stream the peer
// opened) makes a connection receive only, whatever its direction property
// said (receiveOnlyTransport), unless that is UnidirectionalSend: such a
// connection can do nothing, its reading is stopped as above.
//
// The peer's end of stream on a send-only connection is what the
// direction expects: it neither closes nor re-establishes the connection.
func (c *connActor) startDirection() {
	if d, ok := c.t.(stacks.Directional); ok && !d.Sends() && c.dir == Bidirectional {
		c.receiveOnlyTransport()
	}
	switch c.dir {
	case ReceiveOnly:
		if c.finSent {
			return
		}
		c.finalSent, c.finSent = true, true
		c.closeWrite()
	case SendOnly:
		c.discarding = true
		if u, ok := c.t.(stacks.UniStreams); ok && !c.writing && u.MakeSendOnly() {
			return
		}
		if rc, ok := c.t.(interface{ CloseRead() error }); ok {
			_ = rc.CloseRead()
		}
	}
}

// receiveOnlyTransport makes the connection receive only, and its
// properties say so (direction UnidirectionalReceive), as a copy: the
// configuration is shared with the listener's other connections.
func (c *connActor) receiveOnlyTransport() {
	c.dir = ReceiveOnly
	props := c.spec.cfg.Properties
	values := make(map[string]*messages.PropertyValue, len(props.GetValues())+1)
	for k, v := range props.GetValues() {
		values[k] = v
	}
	values["direction"] = &messages.PropertyValue{Kind: &messages.PropertyValue_EnumValue{EnumValue: ReceiveOnly.String()}}
	cfg := *c.spec.cfg
	cfg.Properties = &messages.Properties{Values: values}
	spec := *c.spec
	spec.cfg = &cfg
	c.spec = &spec
}

func (d Direction) String() string {
	switch d {
	case SendOnly:
		return "UnidirectionalSend"
	case ReceiveOnly:
		return "UnidirectionalReceive"
	}
	return "Bidirectional"
}
