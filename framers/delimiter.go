package framers

import (
	"bytes"
	"fmt"
	"math"
)

// DefaultDelimiterMaxMessageSize is the default largest message of a
// [Delimiter], delimiter excluded: 1 MiB.
const DefaultDelimiterMaxMessageSize = 1 << 20

// DelimiterOption configures [NewDelimiter]. [WithMaxMessageSize] is the
// only one.
type DelimiterOption interface {
	applyDelimiter(*Delimiter)
}

// Delimiter frames messages by ending each with a separator: lines when the
// separator is "\n" (see [NewLines]).
//
// On receive it delivers every message up to, not including, the separator
// and skips the separator. A message longer than the maximum with no
// separator in sight fails the connection with a [*TooLargeError]; the
// framer never buffers more than the maximum plus the separator length.
// Bytes left after the last separator when the stream ends cleanly (the
// peer's FIN) are delivered as a final message, the way a text file's last
// line may lack its newline; a message truncated by a FIN therefore cannot
// be told from a complete one, so use [LengthPrefix] when that matters. A
// stream that fails instead (the peer's reset) has not ended for the framer
// ([Instance.Received]): the bytes after the last separator are a cut
// message, never delivered, and gotaps fails the connection with an error
// wrapping [ErrTruncated] and the failure. On a connectionless stack (UDP)
// each datagram is framed on its own, and bytes after a datagram's last
// separator are a cut message (a ReceiveError), not a final one.
//
// It searches only the bytes that arrived since the last search, so a long
// incomplete message costs linear, not quadratic, time. That search position
// is per-connection state.
//
// On send the payload and then the separator go down as two Sends; partial
// sends pass each part down as it comes and add the separator after the
// last. A payload that contains the separator would split into two messages
// at the peer: NewSentMessage cannot refuse it, so gotaps calls
// [Delimiter.CheckMessage] before sending. For a partial send each part is
// checked alone, so a separator split across two parts goes unnoticed. The
// parts it passed down cannot be taken back: a partial message that fails
// after some of it was sent fails the connection ([Delimiter.AbortMessage]).
//
// A Delimiter serves one connection at a time and needs no locking. It
// implements [Cloner], so gotaps gives every connection its own copy.
type Delimiter struct {
	sep []byte
	max int

	// searched is how many bytes from the receive cursor were searched
	// without finding sep (only the last len(sep)-1 of them may still start
	// one).
	searched int
	// partSent: bytes of a partial message went down, its separator not yet
	partSent bool
}

var (
	_ Framer            = (*Delimiter)(nil)
	_ Cloner            = (*Delimiter)(nil)
	_ MessageChecker    = (*Delimiter)(nil)
	_ MaxMessageSizer   = (*Delimiter)(nil)
	_ MessageOverheader = (*Delimiter)(nil)
	_ SendAborter       = (*Delimiter)(nil)
	_ ReceiveResetter   = (*Delimiter)(nil)
)

// NewDelimiter returns a framer that ends every message with sep (copied).
// An empty sep means "\n". The maximum message size is
// [DefaultDelimiterMaxMessageSize] unless [WithMaxMessageSize] says
// otherwise.
func NewDelimiter(sep []byte, opts ...DelimiterOption) *Delimiter {
	if len(sep) == 0 {
		sep = []byte{'\n'}
	}
	d := &Delimiter{sep: bytes.Clone(sep), max: DefaultDelimiterMaxMessageSize}
	for _, o := range opts {
		if o != nil {
			o.applyDelimiter(d)
		}
	}
	d.max = min(d.max, math.MaxInt-len(d.sep))
	return d
}

// NewLines returns a Delimiter for "\n"-terminated lines. A "\r" before the
// "\n" stays part of the line.
func NewLines(opts ...DelimiterOption) *Delimiter {
	return NewDelimiter([]byte{'\n'}, opts...)
}

// Separator returns a copy of the separator.
func (d *Delimiter) Separator() []byte { return bytes.Clone(d.sep) }

// MaxMessageSize returns the largest message, in bytes and without the
// separator, that d accepts.
func (d *Delimiter) MaxMessageSize() int { return d.max }

// MessageOverhead returns the bytes d adds to every message: its separator.
func (d *Delimiter) MessageOverhead() int { return len(d.sep) }

// Clone returns a Delimiter with the same separator and maximum and a fresh
// receive state.
func (d *Delimiter) Clone() Framer {
	return &Delimiter{sep: d.sep, max: d.max}
}

// CheckMessage reports an error wrapping [ErrDeframingFailed] when data
// contains the separator or ends so that the separator sent after it would
// be found early (possible only for a self-overlapping separator such as
// "aba"), and a [*TooLargeError] when it exceeds the
// maximum message size; nil otherwise.
func (d *Delimiter) CheckMessage(data []byte) error {
	if len(data) > d.max {
		return &TooLargeError{Size: uint64(len(data)), Max: uint64(d.max)}
	}
	if i := bytes.Index(data, d.sep); i >= 0 {
		return fmt.Errorf("%w: message contains the delimiter %q at offset %d", ErrDeframingFailed, d.sep, i)
	}
	// A separator that overlaps itself ("aba") may also start inside the
	// end of the message and run into the separator appended after it.
	if len(d.sep) > 1 && len(data) > 0 {
		tail := data[len(data)-min(len(data), len(d.sep)-1):]
		joined := append(bytes.Clone(tail), d.sep...)
		if i := bytes.Index(joined, d.sep); i < len(tail) {
			return fmt.Errorf("%w: the end of the message runs into the delimiter %q", ErrDeframingFailed, d.sep)
		}
	}
	return nil
}

// Start makes the connection ready at once: the format has no handshake.
func (d *Delimiter) Start(inst *Instance) { inst.MakeConnectionReady() }

// Stop has nothing to send; it reports MakeConnectionClosed at once.
func (d *Delimiter) Stop(inst *Instance) { inst.MakeConnectionClosed() }

// NewSentMessage sends data and, when endOfMessage is true, the separator.
// meta is ignored.
func (d *Delimiter) NewSentMessage(inst *Instance, data []byte, meta Metadata, endOfMessage bool) {
	if len(data) > 0 {
		inst.Send(data)
	}
	if endOfMessage {
		d.partSent = false
		// A fresh copy: the lower layer owns what it is given.
		inst.Send(bytes.Clone(d.sep))
		return
	}
	d.partSent = d.partSent || len(data) > 0
}

// AbortMessage ends a partial message that failed before its last part
// ([SendAborter]). When none of it was sent, there is nothing to drop.
// Otherwise the parts sent cannot be taken back: without a separator the
// peer would read them as the start of the next message, and with one as
// a complete message, so it fails the connection with an error wrapping
// [ErrMessageAbandoned] (the peer sees a cut message, never a complete
// one).
func (d *Delimiter) AbortMessage(inst *Instance) {
	if !d.partSent {
		return
	}
	d.partSent = false
	inst.FailConnection(fmt.Errorf("%w: its first parts went out without a separator", ErrMessageAbandoned))
}

// HandleReceivedData delivers every complete message buffered in inst and,
// at the (clean) end of the stream, the unterminated rest.
func (d *Delimiter) HandleReceivedData(inst *Instance) {
	for !inst.Failed() {
		buf, _ := inst.Parse(0, d.max+len(d.sep))
		if len(buf) == 0 {
			d.searched = 0
			return
		}
		start := max(0, d.searched-(len(d.sep)-1))
		if i := bytes.Index(buf[start:], d.sep); i >= 0 {
			d.searched = 0
			inst.DeliverAndAdvanceReceiveCursor(nil, start+i, true)
			inst.AdvanceReceiveCursor(len(d.sep))
			continue
		}
		d.searched = len(buf)
		if len(buf) == d.max+len(d.sep) {
			// No separator starts at or before offset max.
			inst.FailConnection(&TooLargeError{Size: uint64(len(buf)), Max: uint64(d.max)})
			return
		}
		if inst.EndOfStream() {
			d.searched = 0
			inst.DeliverAndAdvanceReceiveCursor(nil, len(buf), true)
		}
		return
	}
}

// ResetReceive forgets how far the unconsumed bytes were searched: gotaps
// discarded them (a datagram ended without a separator after them, on
// UDP), and the next bytes start a new datagram ([ReceiveResetter]).
func (d *Delimiter) ResetReceive() { d.searched = 0 }

// MaxBuffered is the most unparsed bytes a connection may need to hold for
// this framer: the maximum message plus its separator.
func (d *Delimiter) MaxBuffered() int { return d.max + len(d.sep) }
