package taps

import (
	"errors"
	"sync/atomic"

	"github.com/gotaps/gotaps/actors"
)

// Message is one received message, or a part of one (RFC 9622 §9.3).
type Message struct {
	// Data is the message's bytes; the application owns them.
	Data []byte
	// Context carries the message's properties and framer metadata, and
	// the received-side flags (ECN, early data, final).
	Context *MessageContext
	// EndOfMessage is false for a ReceivedPartial event: more of the same
	// message follows (with the same Context).
	EndOfMessage bool

	backing []byte       // the buffer Data is the tail of, when it may be handed back
	link    *actors.Link // where Release hands it back
	// spare, for a Message that Receive made, is where Release leaves it
	// for the connection's next received Message (nil otherwise)
	spare *spareMessage
	rm    *receivedMessage
}

// Release hands the buffer of Data back to the connection, which may
// receive a later message into it; Data is nil afterwards, and no slice of
// it may be used any more (copy out what is kept). Release is optional: a
// buffer that is not handed back is garbage collected as usual. It pays
// for large messages over a framer (16 KiB and up, below the connection's
// receive buffer limit): each is then read into memory already in use
// rather than into a new, zeroed buffer. Releasing other messages only
// clears Data. The Message itself (and its Context) may be reused for the
// connection's next received Message, so that a receive loop that
// releases each Message allocates nothing per message. Call it at most
// once, when nothing else uses the Message or its Context: it is not safe
// for concurrent use. A second call before the connection's next Receive
// does nothing; after it, the Message may already be that next one, which
// the call would release.
func (m *Message) Release() {
	if m.backing != nil && m.link != nil {
		m.link.RecycleRecv(m.backing)
	}
	m.Data, m.backing, m.link = nil, nil, nil
	if rm, sp := m.rm, m.spare; rm != nil && sp != nil {
		m.rm, m.spare = nil, nil
		sp.p.Store(rm)
	}
}

// spareMessage holds one released Message of a connection for its next
// received one (one per connection rather than a shared pool: the same
// memory, still in cache, for a loop that releases each message).
type spareMessage struct {
	p atomic.Pointer[receivedMessage]
}

// take returns the released Message, reset, or a new one.
func (s *spareMessage) take() *receivedMessage {
	rm := s.p.Swap(nil)
	if rm == nil {
		return &receivedMessage{}
	}
	rm.m = Message{}
	rm.mc.reset()
	return rm
}

// ReceiveOption configures one Receive. A nil ReceiveOption is ignored.
type ReceiveOption func(*receiveOpts)

type receiveOpts struct{ min, max int }

// MinIncompleteLength lets Receive return a part of a message once at least
// n bytes of it are available (RFC 9622 minIncompleteLength). The default
// is infinite: only complete messages, except on a byte stream without a
// framer, where any received bytes are returned. An n above the receive
// buffer (WithReceiveBuffer), the default infinite one included, counts as
// the buffer's size: the connection reads no more of a message while the
// buffer is full of it, so a part that fills the buffer is returned (RFC
// 9622 §9.3.2.2: a message larger than the buffers available arrives as
// ReceivedPartial parts even when only complete messages were asked for;
// a framer that delivers a message in parts, as its bytes arrive, meets
// it).
func MinIncompleteLength(n int) ReceiveOption { return func(o *receiveOpts) { o.min = max(n, 0) } }

// MaxLength caps the bytes one Receive returns; a larger message arrives
// as several ReceivedPartial parts (RFC 9622 maxLength). The default is
// infinite. n must be at least 1: with a smaller n, Receive returns a
// *ReceiveError (ReasonInvalidConfiguration) at once and takes nothing.
func MaxLength(n int) ReceiveOption { return func(o *receiveOpts) { o.max = max(n, 0) } }

// errMaxLength is Receive's error for a MaxLength below 1 (receiveOpts.max 0).
var errMaxLength = &ReceiveError{Reason: ReasonInvalidConfiguration, Err: errors.New("MaxLength below 1")}

func receiveOptions(opts []ReceiveOption) receiveOpts {
	if len(opts) == 0 {
		return receiveOpts{min: -1, max: -1} // without a heap allocation
	}
	return applyReceiveOptions(opts)
}

func applyReceiveOptions(opts []ReceiveOption) receiveOpts {
	o := receiveOpts{min: -1, max: -1}
	for _, f := range opts {
		if f != nil { // a nil option is ignored
			f(&o)
		}
	}
	return o
}
