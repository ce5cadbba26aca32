package taps

import "github.com/gotaps/gotaps/actors"

// The direction Selection Property (RFC 9622 §6.2.16) is enforced on every
// stack: on a UnidirectionalSend connection Receive and ReceiveAsync fail
// at once with a *ReceiveError unwrapping to ErrSendOnly and canReceive is
// false; on a UnidirectionalReceive connection Send, SendAsync and
// SendPartial fail with a *SendError unwrapping to ErrReceiveOnly before
// anything is written, and canSend is false. A Listener's direction is its
// received connections' direction. Once a unidirectional connection is
// Ready, the direction it does not use is closed:
//   - UnidirectionalReceive: the sending side ends as after a Final
//     message: TCP and Unix sockets are shut down for writing
//     (shutdown(SHUT_WR): the peer reads the end of the stream), TLS sends
//     close_notify then the FIN, QUIC the stream's FIN; UDP sends nothing.
//     The connection closes once the peer has ended its stream too.
//   - UnidirectionalSend: whatever arrives is discarded; TCP and Unix
//     sockets are shut down for reading (shutdown(SHUT_RD): Linux does not
//     tell a TCP peer, what it still sends is left unread and closing then
//     resets the connection; a Unix peer's writes fail with EPIPE). TLS
//     goes on reading its post-handshake records, and discards. The peer's
//     end of stream is expected: it neither closes nor, under
//     WithReestablishment, re-establishes the connection.
//
// QUIC (RFC 9000 §2.1) lets only the side that opens a unidirectional
// stream send on it:
//   - a UnidirectionalSend connection sends on a QUIC unidirectional
//     stream: Initiate's stream is exchanged for one just before Ready
//     (while nothing is written on it), and a Clone opens one. Only when a
//     framer wrote its own handshake first, or the peer allows no
//     unidirectional stream, does the connection keep its bidirectional
//     stream and stop its reading (STOP_SENDING: the peer's writes fail);
//   - a Listener accepts the peer's unidirectional streams as well as its
//     bidirectional ones. A connection on a unidirectional stream is
//     UnidirectionalReceive whatever the Listener's direction (Send fails
//     with ErrReceiveOnly, canSend is false, its direction property reads
//     UnidirectionalReceive); the peer's end of stream ends it. On a
//     UnidirectionalSend Listener such a connection can do nothing: its
//     reading is stopped (STOP_SENDING);
//   - a UnidirectionalReceive client cannot have a unidirectional
//     stream, which only the peer could open: it uses a bidirectional
//     stream whose sending half it ends at once (FIN), and the peer's
//     Listener accepts it like any other stream.
//
// Framers that write on their own (a handshake) need a bidirectional
// connection. Both errors unwrap to ErrNotAllowed as well.
var (
	// ErrSendOnly: Receive on a UnidirectionalSend connection.
	ErrSendOnly = actors.ErrSendOnly
	// ErrReceiveOnly: Send on a UnidirectionalReceive connection.
	ErrReceiveOnly = actors.ErrReceiveOnly
)

var (
	errSendReceiveOnly = &SendError{Reason: ReasonInvalidConfiguration, Err: ErrReceiveOnly}
	errReceiveSendOnly = &ReceiveError{Reason: ReasonInvalidConfiguration, Err: ErrSendOnly}
)
