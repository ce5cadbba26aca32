// Package framers holds the Message Framer interface of RFC 9623 §6 and the
// built-in framers: length-prefix (the seed's ExampleFramer wire format),
// delimiter (lines) and fixed header.
//
// A Framer is plain Go: it never blocks, never sleeps and never imports the
// actor runtime. gotaps runs each framer of a connection inside its own actor,
// one event at a time, so a Framer needs no locking of its own.
//
// # Events and actions
//
// gotaps calls the Framer's events (Start, Stop, NewSentMessage,
// HandleReceivedData); the Framer answers through the actions of the
// *Instance it is given (Parse, AdvanceReceiveCursor,
// DeliverAndAdvanceReceiveCursor, Deliver, Send, MakeConnectionReady,
// MakeConnectionClosed, FailConnection, PrependFramer, StartPassthrough).
//
// # Stacking
//
// Framers stack in the order they are added to a Preconnection: the last one
// added runs first on send and last on receive.
//
// # Messages sent in parts
//
// A Message sent in parts reaches a framer as several NewSentMessage
// events, the last with endOfMessage true. gotaps checks every part before
// it hands it over ([MessageChecker], [MaxMessageSizer]); when a part
// fails, the Message fails as a whole (its later parts fail too), and a
// framer that holds parts of it is told to drop them ([SendAborter]).
//
// # Datagrams
//
// On a connectionless stack (UDP, UDP-Lite) every datagram is framed on its
// own: a framer gets each datagram whole, as if the stream started with it,
// and what it leaves unconsumed at the datagram's end (a cut frame) is
// never joined to the next datagram (Instance.EndDatagram). Such a cut
// frame, and a FailConnection about the datagram's content (a frame above
// the maximum, malformed bytes), end only that message: the application
// gets a ReceiveError for it and the connection goes on. A framer with
// receive state of its own resets it in [ReceiveResetter]. Each message a
// framer sends leaves as one datagram; a Message sent in parts is gathered
// until its last part and reaches the framers whole (one NewSentMessage
// with endOfMessage true), so that it too leaves as one datagram.
package framers

import (
	"errors"
	"fmt"
)

// Metadata is the framer metadata of one Message: the key/value pairs a
// framer reads on send and attaches on receive. gotaps keeps it in the
// MessageContext, namespaced per framer, so two framers never see each
// other's keys.
type Metadata map[string]any

// Size returns the bytes m's []byte and string values hold: what a
// received message's metadata costs the receiver beside its data (a
// [FixedHeader] copies every message's header into it). gotaps charges
// it against the receive buffer with the message. Other values count
// nothing. A nil m has size 0.
func (m Metadata) Size() int {
	n := 0
	for _, v := range m {
		switch v := v.(type) {
		case []byte:
			n += len(v)
		case string:
			n += len(v)
		}
	}
	return n
}

// Framer is the RFC 9623 §6 framer implementation interface. One Framer value
// serves one connection: Clone and every racing attempt get their own copy
// through New when the Framer also implements Cloner.
//
// Every method is called from one goroutine at a time for a given Instance.
// A panic in any method is contained by gotaps and ends that connection with
// a ConnectionError; it never crashes the process.
type Framer interface {
	// Start is the Start event: a connection attempt begins. The framer may
	// Send handshake data, then calls inst.MakeConnectionReady when the
	// connection may become Ready (at once for framers without a handshake).
	Start(inst *Instance)
	// Stop is the Stop event: the connection is closing. The framer may Send
	// final data.
	Stop(inst *Instance)
	// NewSentMessage is the NewSentMessage event: the application sent data
	// (a whole Message, or a part of one when endOfMessage is false). The
	// framer transforms it and passes the result down with inst.Send.
	NewSentMessage(inst *Instance, data []byte, meta Metadata, endOfMessage bool)
	// HandleReceivedData is the HandleReceivedData event: new bytes are
	// available from the cursor. The framer parses and delivers as many
	// complete messages as it can; gotaps calls it again while it consumes
	// received bytes, so a framer that handles one message per call also
	// works. A call that consumes nothing is not repeated until more data
	// (or the end of the stream) arrives.
	HandleReceivedData(inst *Instance)
}

// Cloner is implemented by framers that carry per-connection state: gotaps
// calls NewInstance for every connection (and Clone) instead of sharing the
// value added to the Preconnection. Stateless framers need not implement it.
type Cloner interface {
	Clone() Framer
}

// Errors reported by framers. They unwrap from the ReceiveError or
// ConnectionError the application sees.
var (
	// ErrMessageTooLarge: the peer announced or sent a message above the
	// framer's maximum size. Nothing of that size is allocated.
	ErrMessageTooLarge = errors.New("framed message exceeds the maximum size")
	// ErrDeframingFailed: the received bytes do not follow the wire format.
	ErrDeframingFailed = errors.New("deframing failed")
	// ErrTruncated: the stream ended inside a message.
	ErrTruncated = errors.New("stream ended inside a framed message")
)

// TooLargeError reports an announced size above the limit. It unwraps to
// ErrMessageTooLarge.
type TooLargeError struct {
	Size, Max uint64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("framed message of %d bytes exceeds the maximum of %d", e.Size, e.Max)
}

func (e *TooLargeError) Unwrap() error { return ErrMessageTooLarge }

// Hooks connect an Instance to the layers below and above it. gotaps sets
// them; tests of a Framer may set them to record what it does. A nil hook is
// a no-op.
type Hooks struct {
	// Send passes framed bytes to the next lower layer. The slice is owned
	// by the receiver afterwards; the framer must not modify it.
	Send func(data []byte)
	// Deliver passes a received message (or part of one) up.
	Deliver func(meta Metadata, data []byte, endOfMessage bool)
	// DeliverOwned, when set, is called instead of Deliver with backing:
	// a buffer from Alloc whose tail data is, and which the Instance no
	// longer references (the receiver may hand it back to Alloc once the
	// data is consumed), or nil as for Deliver.
	DeliverOwned func(meta Metadata, data, backing []byte, endOfMessage bool)
	// Alloc, when set, returns a buffer of length n (its contents are
	// arbitrary) for the Instance to receive into. The default is make.
	// The buffer's capacity beyond n is the Instance's too: it may receive
	// into it instead of asking for a larger buffer.
	Alloc func(n int) []byte
	// Free, when set, gets back a buffer from Alloc that the Instance
	// outgrew: it copied the bytes into a larger one, and nothing of the
	// buffer was delivered or is referenced any more. The owner may hand
	// it to Alloc again.
	Free func(b []byte)
	// Ready is MakeConnectionReady.
	Ready func()
	// Closed is MakeConnectionClosed.
	Closed func()
	// Fail is FailConnection.
	Fail func(err error)
	// Prepend is PrependFramer.
	Prepend func(f Framer)
	// Passthrough is StartPassthrough.
	Passthrough func()
	// Release, when set, gets back a slice passed to Received (or the rest
	// of one from the cursor on) that the Instance copied and no longer
	// references: the owner may reuse it if it recognizes it.
	Release func(data []byte)
	// Allowance, when set, is asked for more once the deliveries spent
	// what [Instance.Allow] allowed (spent: what they cost since that
	// call). It returns what they may cost from now on; at most 0 makes
	// the Instance hold the rest of its bytes ([Instance.Holding]).
	Allowance func(spent int) int
}

// DefaultMaxBuffered bounds the unparsed bytes an Instance holds when the
// owner sets no limit: 16 MiB plus room for a header.
const DefaultMaxBuffered = 16<<20 + 64

// growMin is the size of the first buffer a message is received into when
// the framer waits for more (an unmet Parse). The buffer then grows with
// the bytes that arrive, doubling up to what the framer waits for: what a
// peer announces costs nothing until it sends the bytes, and the copies
// made while growing add up to less than the message.
const growMin = 64 << 10

// Instance is one framer's view of one connection: its receive buffer with
// a cursor, and the actions of RFC 9623 §6. It is driven by one goroutine at
// a time (the framer's actor); its methods are not safe for concurrent use.
type Instance struct {
	hooks       Hooks
	owner       Owner // the hooks as one object (NewOwnedInstance), or nil
	maxBuffered int

	buf []byte // unprocessed received bytes; buf[0] is at the cursor

	// earmark: bytes promised to an earlier DeliverAndAdvanceReceiveCursor
	// that had not arrived yet; they are delivered as they come.
	earmark     int
	earmarkMeta Metadata

	want    int // the last unmet Parse minimum: how much the framer waits for
	growMin int // growMin unless a test sets it (0: growMin)
	// proven is the largest Parse minimum met: the peer has sent that
	// many bytes of one message before, so a message's buffer may start
	// at that size (memory the connection has needed already)
	proven int

	// room is the buffer handed out by ReadTarget: buf is room[:roomLen]
	// (with its capacity cut there, so that appends never write into the
	// handed-out tail) until bytes read into the tail come back.
	room    []byte
	roomLen int
	allocd  []byte // the last buffer from alloc: handed up with the message that ends it
	failErr error  // what FailConnection was given (EndDatagram)

	// the delivery allowance (Allow): while limited, each delivered piece
	// costs perPiece plus its length against allowance (granted since the
	// last Allow); holding: it ran out, and Parse reports no bytes
	allowance int
	granted   int
	perPiece  int
	// skipped: the bytes the cursor advanced past without delivering
	// them (AdvanceReceiveCursor) since the last delivery; overhead:
	// what the piece being delivered costs beyond its bytes
	// (DeliveryOverhead)
	skipped  int
	overhead int

	// the one-byte fields together (no padding between them)
	eos         bool // the lower layer ended the stream
	earmarkEOM  bool // the endOfMessage the earmarked piece ends with
	ready       bool
	closed      bool
	failed      bool
	passthrough bool
	limited     bool
	holding     bool
}

// Owner is an Instance's owner as one object (NewOwnedInstance): its
// methods are the hooks of the same names in Hooks, all of them set (an
// Instance with an Owner calls no Deliver, Closed or Passthrough hook). An
// owner that makes an Instance per connection gives one object where Hooks
// takes a function per hook, each a closure (an allocation) bound to it.
type Owner interface {
	Send(data []byte)
	DeliverOwned(meta Metadata, data, backing []byte, endOfMessage bool)
	Alloc(n int) []byte
	Free(b []byte)
	Ready()
	Fail(err error)
	Prepend(f Framer)
	Release(data []byte)
	Allowance(spent int) int
}

// NewOwnedInstance returns an Instance wired to o, as NewInstance is to
// hooks.
func NewOwnedInstance(o Owner, maxBuffered int) *Instance {
	i := NewInstance(Hooks{}, maxBuffered)
	i.owner = o
	return i
}

// NewInstance returns an Instance wired to hooks. maxBuffered bounds the
// unparsed bytes it holds (0 means DefaultMaxBuffered): a framer that asks
// for more fails the connection with ErrMessageTooLarge instead of growing
// without bound.
func NewInstance(h Hooks, maxBuffered int) *Instance {
	if maxBuffered <= 0 {
		maxBuffered = DefaultMaxBuffered
	}
	return &Instance{hooks: h, maxBuffered: maxBuffered}
}

// --- driven by the owner ---

// Received appends data from the lower layer (ownership moves to the
// Instance) and runs f.HandleReceivedData while it consumes bytes. eos
// reports that the lower layer has ended the stream cleanly after data (a
// FIN, io.EOF). A stream that fails (a reset, a read error) must not be
// passed as eos: a framer may finalize what it holds at the end of the
// stream ([Delimiter]'s unterminated last line), which a failure must not
// make a complete message. gotaps passes no eos then, and fails the
// connection with ErrTruncated wrapping the failure when the framer still
// holds bytes (a cut message), with the failure alone otherwise.
func (i *Instance) Received(f Framer, data []byte, eos bool) {
	for {
		rest, more := i.received(f, data, eos)
		if !more {
			return
		}
		data = rest
	}
}

// received is one step of Received: it takes data (or, when data holds
// more than the message the framer waits for, just that message's bytes,
// then more reports that rest is still to be taken) and parses.
func (i *Instance) received(f Framer, data []byte, eos bool) (rest []byte, more bool) {
	if i.failed {
		return nil, false
	}
	if i.passthrough {
		if len(data) > 0 || eos {
			i.deliver(nil, data, eos)
		}
		return nil, false
	}
	if i.earmark > 0 && len(data) > 0 {
		n := min(i.earmark, len(data))
		i.earmark -= n
		i.deliver(i.earmarkMeta, data[:n:n], i.earmark == 0 && i.earmarkEOM)
		data = data[n:]
	}
	if len(data) > 0 && i.inRoom(data) {
		// read straight into the tail handed out by ReadTarget: no copy
		n := i.roomLen + len(data)
		i.buf = i.room[:n:n]
		i.roomLen = n
		data = nil
	}
	if len(data) > 0 {
		need := i.want - len(i.buf)
		switch {
		case len(i.buf) == 0 && (i.want <= len(data) || i.want > i.maxBuffered):
			i.buf = data
		case need > 0 && need < len(data) && i.want <= i.maxBuffered:
			// data completes what the framer waits for, with more behind:
			// copy only that into a buffer of the wanted size; the rest is
			// taken in place once it has parsed
			if cap(i.buf)-len(i.buf) < need {
				nb := i.alloc(i.want)[:len(i.buf)]
				copy(nb, i.buf)
				i.buf = nb
			}
			i.buf = append(i.buf, data[:need]...)
			data, rest, more = nil, data[need:], true
		case cap(i.buf)-len(i.buf) < len(data) && need > 0 && i.want <= i.maxBuffered:
			// the framer said how much it needs (an unmet Parse): grow
			// the buffer towards that with what has arrived (growSize)
			old := i.allocd
			b := i.alloc(i.growSize(len(i.buf) + len(data)))
			nb := b[:len(i.buf):len(b)]
			copy(nb, i.buf)
			i.outgrew(old)
			i.buf = append(nb, data...)
			i.release(data)
		default:
			i.buf = append(i.buf, data...)
			i.release(data)
		}
	}
	if eos && !more {
		i.eos = true
		if i.earmark > 0 {
			i.FailConnection(fmt.Errorf("%w: %d bytes missing", ErrTruncated, i.earmark))
			return nil, false
		}
	}
	for !i.failed && !i.passthrough && !i.holding && i.earmark == 0 && (len(i.buf) > 0 || i.eos) {
		before := len(i.buf)
		f.HandleReceivedData(i)
		if len(i.buf) >= before {
			// nothing consumed: calling again would do the same (a framer
			// that delivers without consuming would be called forever)
			break
		}
	}
	if i.eos && !more && i.earmark > 0 && !i.failed {
		// the framer promised bytes beyond the end of the stream
		i.FailConnection(fmt.Errorf("%w: %d bytes missing", ErrTruncated, i.earmark))
		return nil, false
	}
	if i.passthrough && len(i.buf) > 0 {
		held := i.buf
		i.buf = nil
		i.deliver(nil, held, i.eos && !more)
	}
	if !i.failed && !i.holding && len(i.buf) > i.maxBuffered {
		i.FailConnection(&TooLargeError{Size: uint64(len(i.buf)), Max: uint64(i.maxBuffered)})
	}
	return rest, more && !i.failed
}

// ReadTarget returns where the owner may read the next received bytes
// directly: the free room behind the buffered bytes, towards what the
// framer waits for (the minimum of its last unmet Parse, at most the
// Instance's bound). The room grows with the bytes read into it: it starts
// at about twice the buffered bytes (at least 64 KiB) and doubles each time
// it fills, never beyond what the framer waits for, so the memory a message
// takes follows the bytes that arrived, not the size its header announces
// (it may start as large as the largest message the peer sent before).
// It returns nil unless at least minBytes more bytes are wanted (or a
// target was already lent for this Parse: then the room is lent, and
// grown, to its end). Bytes read into a prefix of the target and then
// passed to Received are taken in place, without a copy; anything else
// passed to Received is copied as usual, so a target that is not used, or
// used late, costs nothing but the allocation. The Instance never writes
// into a target it handed out.
func (i *Instance) ReadTarget(minBytes int) []byte {
	need := i.want - len(i.buf)
	if i.failed || i.passthrough || i.eos || i.holding || i.earmark > 0 || len(i.buf) == 0 ||
		i.want > i.maxBuffered || need <= 0 {
		return nil
	}
	held := i.roomHolds()
	if need < minBytes && !held {
		return nil // not worth a buffer of its own (a room already made is lent to the end)
	}
	if !held || i.roomLen >= len(i.room) {
		// a first room, or a larger one once the bytes filled it
		size := i.growSize(len(i.buf))
		var room []byte
		if !held && cap(i.buf) >= size {
			room = i.buf[:min(cap(i.buf), i.want)] // already sized (Received): the Instance owns its capacity
		} else {
			old := i.allocd
			room = i.alloc(size)
			copy(room, i.buf)
			if !i.outgrew(old) {
				i.release(i.buf) // copied away (the owner reuses it if it can)
			}
		}
		n := len(i.buf)
		i.room, i.roomLen = room, n
		i.buf = room[:n:n]
	}
	end := min(len(i.room), i.want)
	return i.room[i.roomLen:end:end]
}

// growSize is the size of the buffer to receive into when it must hold n
// of the bytes the framer waits for: n plus as much again (at least
// growMin), or as much as the largest message the peer has sent before
// (proven), at most what the framer waits for. Growing by doubling keeps
// the copies below the message's size, and the buffer below twice the
// bytes received (plus growMin) or the largest message received before; a
// peer that keeps sending messages of one size has its messages received
// in place, without a copy.
func (i *Instance) growSize(n int) int {
	g := i.growMin
	if g <= 0 {
		g = growMin
	}
	if more := max(g, n, i.proven-n); more < i.want-n {
		return n + more
	}
	return i.want
}

// roomHolds reports whether buf is still the front of room.
func (i *Instance) roomHolds() bool {
	return i.room != nil && len(i.buf) == i.roomLen && len(i.buf) > 0 && &i.buf[0] == &i.room[0]
}

// inRoom reports whether data was read into the tail of room (ReadTarget)
// right behind the buffered bytes.
func (i *Instance) inRoom(data []byte) bool {
	if !i.roomHolds() || len(data) > len(i.room)-i.roomLen {
		if i.room != nil && !i.roomHolds() {
			i.room = nil // buf moved on: the room is no longer ours to extend
		}
		return false
	}
	return &i.room[i.roomLen] == &data[0]
}

// alloc returns a buffer of length at least n to receive into
// (Hooks.Alloc) and remembers it, so that the message that ends it can
// carry it up. A buffer handed back with more capacity (one a larger
// message was received into) is taken up to what the framer waits for:
// that memory is there already.
func (i *Instance) alloc(n int) []byte {
	var b []byte
	if i.owner != nil {
		b = i.owner.Alloc(n)
	} else if i.hooks.Alloc != nil {
		b = i.hooks.Alloc(n)
	}
	if len(b) != n {
		b = make([]byte, n)
	}
	if c := min(cap(b), i.want); c > n {
		b = b[:c]
	}
	i.allocd = b
	return b
}

// outgrew hands old, the buffer from alloc before the last, to Hooks.Free
// when buf (just copied into the new one) starts it and no part of it is
// lent (ReadTarget) and still out: then nothing of it was delivered, and
// neither the Instance nor a reader references it.
func (i *Instance) outgrew(old []byte) bool {
	if (i.owner == nil && i.hooks.Free == nil) || len(old) == 0 || len(i.buf) == 0 || &old[0] != &i.buf[0] {
		return false
	}
	if r := i.room; len(r) > 0 && i.roomLen < len(r) && &r[0] == &old[0] {
		return false // its tail is lent (a room starts where buf did): a reader may still read into it
	}
	if i.owner != nil {
		i.owner.Free(old)
		return true
	}
	i.hooks.Free(old)
	return true
}

// handOff reports the buffer data is the tail of, when that is the last
// buffer alloc returned and nothing unprocessed is left in it: the Instance
// forgets it, and the receiver of data owns it. Otherwise nil.
func (i *Instance) handOff(data []byte) []byte {
	a := i.allocd
	if len(a) == 0 || len(data) == 0 || len(data) > len(a) || len(i.buf) > 0 ||
		&data[len(data)-1] != &a[len(a)-1] {
		return nil
	}
	i.allocd = nil
	if len(i.room) > 0 && &i.room[len(i.room)-1] == &a[len(a)-1] {
		i.room, i.roomLen = nil, 0
	}
	return a
}

func (i *Instance) release(data []byte) {
	if i.owner != nil {
		i.owner.Release(data)
	} else if i.hooks.Release != nil {
		i.hooks.Release(data)
	}
}

// EndDatagram ends the bytes of one datagram. On a connectionless stack
// (UDP, UDP-Lite) every datagram is framed on its own: gotaps passes it to
// Received whole and then calls EndDatagram, so that nothing of it is
// joined to the next datagram. It discards the bytes the framer left
// unconsumed (left: a frame cut at the datagram's end) and forgets the
// bytes still due to a message delivered in part by
// DeliverAndAdvanceReceiveCursor (due), then calls f's ResetReceive when
// f implements [ReceiveResetter]. Both counts are 0 when the datagram
// ended on a frame boundary.
//
// A FailConnection made while framing the datagram, once the connection
// is ready, with an error that wraps ErrMessageTooLarge, ErrDeframingFailed
// or ErrTruncated is a fault of that datagram's content, not of the
// connection: EndDatagram returns it as fault and clears it, and the
// Instance frames the next datagram (gotaps reports it as that message's
// receive error). Any other failure stays: EndDatagram then does nothing.
func (i *Instance) EndDatagram(f Framer) (left, due int, fault error) {
	if i.failed {
		if !i.ready || !isDatagramFault(i.failErr) {
			return 0, 0, nil
		}
		fault, i.failed, i.failErr = i.failErr, false, nil
	}
	left, due = len(i.buf), i.earmark
	i.buf, i.want, i.room, i.roomLen, i.allocd, i.skipped = nil, 0, nil, 0, nil, 0
	i.earmark, i.earmarkMeta, i.earmarkEOM = 0, nil, false
	if r, ok := f.(ReceiveResetter); ok {
		r.ResetReceive()
	}
	return left, due, fault
}

// isDatagramFault reports whether err, given to FailConnection, is about
// the received bytes' content (it wraps ErrMessageTooLarge,
// ErrDeframingFailed or ErrTruncated): on a connectionless stack such a
// failure ends only the datagram it was found in (Instance.EndDatagram).
func isDatagramFault(err error) bool {
	return errors.Is(err, ErrMessageTooLarge) || errors.Is(err, ErrDeframingFailed) || errors.Is(err, ErrTruncated)
}

// ReceiveResetter is implemented by framers that keep receive state
// between their HandleReceivedData calls (how far they searched the
// unconsumed bytes, a message they delivered in part with Deliver): on a
// connectionless stack (UDP, UDP-Lite) gotaps calls ResetReceive at the
// end of every datagram (Instance.EndDatagram), after which the framer
// must frame the next bytes as the start of a new datagram. Framers
// whose receive state is all in the Instance need not implement it.
type ReceiveResetter interface {
	ResetReceive()
}

// Buffered reports how many unprocessed bytes the Instance holds.
func (i *Instance) Buffered() int { return len(i.buf) }

// Wants reports how many bytes the framer waits for from the cursor (the
// minimum of its last unmet Parse), or 0. An Alloc hook that keeps
// buffers may pick one that fits the whole message.
func (i *Instance) Wants() int { return i.want }

// EndOfStream reports whether the lower layer has ended the stream cleanly
// (eos in [Instance.Received]; never after a reset). A framer that finds
// an incomplete message at the end of the stream calls FailConnection
// with ErrTruncated. While the Instance holds its bytes
// ([Instance.Holding]) the stream has not ended for the framer yet.
func (i *Instance) EndOfStream() bool { return i.eos && !i.holding }

// Allow limits what the messages the Instance delivers from now on may
// cost the receiver: each delivered piece costs perPiece plus its length
// and its DeliveryOverhead (its metadata's size, the bytes skipped before
// it), and once they have cost
// n the Instance asks Hooks.Allowance for more. When there is no more,
// Parse reports no bytes (as if none had arrived), so the framer stops;
// the Instance holds the unparsed bytes (Holding) until the next
// Received after another Allow, which may bring no new bytes. A framer
// that delivers several messages after one Parse is stopped only at its
// next Parse. Without Allow, deliveries are not limited.
func (i *Instance) Allow(n, perPiece int) {
	i.limited, i.holding = true, false
	i.allowance, i.granted, i.perPiece = n, n, perPiece
}

// Holding reports whether the Instance stopped parsing for want of
// allowance (Allow): the bytes it buffers wait for the next Received.
func (i *Instance) Holding() bool { return i.holding }

// allowMore asks Hooks.Allowance for more allowance, and holds when there
// is none.
func (i *Instance) allowMore() bool {
	if !i.holding && (i.owner != nil || i.hooks.Allowance != nil) {
		spent := i.granted - i.allowance
		var n int
		if i.owner != nil {
			n = i.owner.Allowance(spent)
		} else {
			n = i.hooks.Allowance(spent)
		}
		if n > 0 {
			i.allowance, i.granted = n, spent+n
			return true
		}
	}
	i.holding = true
	return false
}

// IsReady reports whether MakeConnectionReady was called.
func (i *Instance) IsReady() bool { return i.ready }

// Failed reports whether FailConnection was called.
func (i *Instance) Failed() bool { return i.failed }

// --- RFC 9623 §6 actions ---

// Parse returns the unprocessed bytes from the cursor: at least
// minIncompleteLength and at most maxLength of them (maxLength < 0 means no
// limit). ok is false when fewer than minIncompleteLength bytes are
// available; the framer then returns and waits for more data. The returned
// slice aliases the receive buffer: the framer must not keep or modify it.
func (i *Instance) Parse(minIncompleteLength, maxLength int) (data []byte, ok bool) {
	if i.limited && i.allowance <= 0 && len(i.buf) > 0 && !i.allowMore() {
		return nil, false // held (Allow): the bytes wait
	}
	if minIncompleteLength < 0 {
		minIncompleteLength = 0
	}
	if len(i.buf) < minIncompleteLength {
		i.want = minIncompleteLength
		if minIncompleteLength > i.maxBuffered {
			i.FailConnection(&TooLargeError{Size: uint64(minIncompleteLength), Max: uint64(i.maxBuffered)})
		}
		return nil, false
	}
	i.want = 0
	if minIncompleteLength > i.proven {
		i.proven = minIncompleteLength
	}
	n := len(i.buf)
	if maxLength >= 0 && maxLength < n {
		n = maxLength
	}
	return i.buf[:n:n], true
}

// AdvanceReceiveCursor discards n bytes at the cursor (a header, say).
// The receiver is charged for them with the next piece delivered
// ([Instance.DeliveryOverhead]): that piece may share their buffer.
func (i *Instance) AdvanceReceiveCursor(n int) {
	if n <= 0 {
		return
	}
	n = min(n, len(i.buf))
	i.skipped += n
	i.buf = i.buf[n:]
	if len(i.buf) == 0 {
		i.buf = nil
	}
}

// DeliverAndAdvanceReceiveCursor delivers length bytes from the cursor as a
// message (or the last part of one when endOfMessage is true) and advances
// past them. When fewer than length bytes have arrived, the available bytes
// are delivered at once as a partial message and the rest is earmarked: it
// is delivered as it arrives, the last piece with endOfMessage.
func (i *Instance) DeliverAndAdvanceReceiveCursor(meta Metadata, length int, endOfMessage bool) {
	if length < 0 || i.earmarkDue() {
		return
	}
	n := min(length, len(i.buf))
	data := i.buf[:n:n]
	i.buf = i.buf[n:]
	if len(i.buf) == 0 {
		i.buf = nil
	}
	if n < length {
		i.earmark = length - n
		i.earmarkMeta = meta
		i.earmarkEOM = endOfMessage
		i.deliver(meta, data, false)
		return
	}
	if endOfMessage && (i.owner != nil || i.hooks.DeliverOwned != nil) && !i.failed {
		if b := i.handOff(data); b != nil {
			i.spend(meta, data)
			if i.owner != nil {
				i.owner.DeliverOwned(meta, data, b, true)
			} else {
				i.hooks.DeliverOwned(meta, data, b, true)
			}
			return
		}
	}
	i.deliver(meta, data, endOfMessage)
}

// Deliver delivers data the framer allocated itself (a transformed
// message, say).
func (i *Instance) Deliver(meta Metadata, data []byte, endOfMessage bool) {
	if i.earmarkDue() {
		return
	}
	i.deliver(meta, data, endOfMessage)
}

// earmarkDue fails the connection when bytes promised to an earlier
// DeliverAndAdvanceReceiveCursor are still due: delivering anything else
// now would cut that message short or mix another into it.
func (i *Instance) earmarkDue() bool {
	if i.earmark == 0 || i.failed {
		return i.failed
	}
	i.FailConnection(fmt.Errorf("%w: the framer delivered while %d bytes of its last message were still due", ErrDeframingFailed, i.earmark))
	return true
}

// Send passes framed bytes to the next lower layer. Call it several times
// for one message to avoid copying (a header, then the payload). The framer
// must not modify data afterwards.
func (i *Instance) Send(data []byte) {
	switch {
	case i.failed:
	case i.owner != nil:
		i.owner.Send(data)
	case i.hooks.Send != nil:
		i.hooks.Send(data)
	}
}

// MakeConnectionReady tells gotaps that the framer's setup is done: the
// connection may become Ready once every framer has said so.
func (i *Instance) MakeConnectionReady() {
	if i.ready || i.failed {
		return
	}
	i.ready = true
	if i.owner != nil {
		i.owner.Ready()
	} else if i.hooks.Ready != nil {
		i.hooks.Ready()
	}
}

// MakeConnectionClosed tells gotaps that the framer finished its Stop work.
func (i *Instance) MakeConnectionClosed() {
	if i.closed {
		return
	}
	i.closed = true
	if i.hooks.Closed != nil {
		i.hooks.Closed()
	}
}

// FailConnection reports a fatal error: before Ready the attempt fails (the
// next racing candidate is tried); afterwards the connection ends with a
// ConnectionError wrapping err.
func (i *Instance) FailConnection(err error) {
	if i.failed {
		return
	}
	if err == nil {
		err = ErrDeframingFailed
	}
	i.failed, i.failErr = true, err
	i.buf, i.room, i.allocd, i.skipped = nil, nil, nil, 0
	if i.owner != nil {
		i.owner.Fail(err)
	} else if i.hooks.Fail != nil {
		i.hooks.Fail(err)
	}
}

// PrependFramer inserts f above this framer (before Ready), as STARTTLS-like
// protocols need.
func (i *Instance) PrependFramer(f Framer) {
	switch {
	case f == nil:
	case i.owner != nil:
		i.owner.Prepend(f)
	case i.hooks.Prepend != nil:
		i.hooks.Prepend(f)
	}
}

// StartPassthrough stops framing: from now on bytes pass through this
// framer unchanged in both directions.
func (i *Instance) StartPassthrough() {
	if i.passthrough {
		return
	}
	i.passthrough = true
	if i.hooks.Passthrough != nil {
		i.hooks.Passthrough()
	}
}

// InPassthrough reports whether StartPassthrough was called.
func (i *Instance) InPassthrough() bool { return i.passthrough }

func (i *Instance) deliver(meta Metadata, data []byte, eom bool) {
	if i.failed {
		return
	}
	i.spend(meta, data)
	switch {
	case i.owner != nil:
		i.owner.DeliverOwned(meta, data, nil, eom)
	case i.hooks.DeliverOwned != nil:
		i.hooks.DeliverOwned(meta, data, nil, eom)
	case i.hooks.Deliver != nil:
		i.hooks.Deliver(meta, data, eom)
	}
}

// spend counts the piece data with meta, about to be delivered, against
// the allowance (Allow), and sets what it costs beyond its bytes
// (DeliveryOverhead).
func (i *Instance) spend(meta Metadata, data []byte) {
	o := i.skipped
	if meta != nil {
		o += meta.Size() // not called for none: the common case costs no call
	}
	i.overhead, i.skipped = o, 0
	i.allowance -= i.perPiece + len(data) + o
}

// DeliveryOverhead reports, during a Hooks.Deliver or DeliverOwned call,
// what the piece delivered costs the receiver beyond its bytes: the size
// of its metadata ([Metadata.Size]) and the bytes the framer skipped
// (AdvanceReceiveCursor: headers, padding) since the piece before it,
// which its buffer may hold with it (a piece cut from a read buffer keeps
// the whole buffer alive). [Instance.Allow] counts it; gotaps charges it
// against the receive buffer with the piece, so that a peer whose tiny
// messages come behind large headers or padding cannot make the receiver
// hold many times its receive buffer.
func (i *Instance) DeliveryOverhead() int { return i.overhead }

// MaxBufferer is implemented by framers that know how many unparsed bytes
// they may need at most (their maximum message size plus header): gotaps
// sizes the Instance's buffer bound from it.
type MaxBufferer interface {
	MaxBuffered() int
}

// Instantiate returns the Framer to use for one connection: a fresh copy
// when f implements Cloner, f itself otherwise.
func Instantiate(f Framer) Framer {
	if c, ok := f.(Cloner); ok {
		return c.Clone()
	}
	return f
}
