package framers

import "errors"

// MessageChecker is implemented by framers that can tell, before a Message
// is handed to NewSentMessage, whether they are able to frame it. The
// NewSentMessage event cannot return an error, so gotaps calls CheckMessage
// from Connection.Send first and reports a failure as a SendError for that
// Message instead of framing corrupt data.
//
// CheckMessage sees one Send call's data: for a partial send it checks that
// part only (gotaps calls it for every part). It must not change the
// framer's state, so it is safe to call from any goroutine as long as the
// framer's configuration is not being changed (the built-in framers are
// immutable after construction).
//
// A part it refuses fails its whole Message: the later parts fail too, and
// the framer is told to drop the parts it holds ([SendAborter]).
type MessageChecker interface {
	CheckMessage(data []byte) error
}

// MaxMessageSizer is implemented by framers that have a largest message
// ([LengthPrefix], [FixedHeader], [Delimiter]). For a Message sent in
// parts, gotaps checks the size of its parts so far against it before it
// hands each part over, as CheckMessage checks the part: a part that takes
// the Message above it is a SendError (a [*TooLargeError]) and fails the
// Message, instead of failing the connection in NewSentMessage. Like
// CheckMessage it may be called from any goroutine.
type MaxMessageSizer interface {
	MaxMessageSize() int
}

// MessageOverheader is implemented by framers that add a fixed number of
// bytes to every Message they frame ([LengthPrefix] its header,
// [FixedHeader] its header, [Delimiter] its separator). On a datagram
// stack (UDP, UDP-Lite), where every framed Message leaves as one datagram,
// gotaps takes it off the datagram's largest payload to report
// sendMsgMaxLen and recvMsgMaxLen (RFC 9622 §8.1.11): a Message of that
// size, framed, fits one datagram. Like CheckMessage it may be called
// from any goroutine.
type MessageOverheader interface {
	MessageOverhead() int
}

// SendAborter is implemented by framers that keep state for a Message sent
// in parts (NewSentMessage with endOfMessage false). gotaps calls
// AbortMessage when such a Message fails before its last part reaches the
// framer: a later part was refused with a SendError (CheckMessage, the
// Message's size, a Message Property the connection cannot honour), or
// could not be handed over. The framer drops what it holds of the Message,
// so that nothing of it reaches the peer as a complete Message, and the
// next Message starts afresh; it is called only after the Message's
// earlier parts, and never while no Message is open (a framer need not
// check). What it sends (inst.Send) is dropped. A framer that has already
// passed parts of the Message down, and cannot take them back, fails the
// connection (inst.FailConnection) rather than let the peer read them as
// the start of the next Message. A framer that does not implement it is
// told nothing: what it holds of the Message stays.
type SendAborter interface {
	AbortMessage(inst *Instance)
}

// ErrMessageAbandoned: a Message sent in parts failed after a framer had
// passed some of its parts down, which the peer would read as the start of
// the next Message ([Delimiter.AbortMessage]): the connection fails with it.
var ErrMessageAbandoned = errors.New("a message sent in parts failed after some of it was sent")

// MaxSizeOption sets the largest message body a framer accepts, on receive
// and on send. It is returned by [WithMaxMessageSize] and is accepted by
// [NewLengthPrefix], [NewDelimiter] and [NewFixedHeader].
type MaxSizeOption struct {
	n int
}

// WithMaxMessageSize sets the largest message body, in bytes, that a framer
// accepts. A value <= 0 keeps the framer's default (16 MiB for
// [LengthPrefix] and [FixedHeader], 1 MiB for [Delimiter]). Framers whose
// length field cannot carry n lower it to the largest value they can encode.
//
// The limit is checked before anything of that size is buffered: a peer that
// announces more fails the connection with a [*TooLargeError] (which
// unwraps to [ErrMessageTooLarge]).
func WithMaxMessageSize(n int) MaxSizeOption { return MaxSizeOption{n: n} }

func (o MaxSizeOption) applyLengthPrefix(l *LengthPrefix) {
	if o.n > 0 {
		l.core.max = o.n
	}
}

func (o MaxSizeOption) applyDelimiter(d *Delimiter) {
	if o.n > 0 {
		d.max = o.n
	}
}

func (o MaxSizeOption) applyFixedHeader(f *FixedHeader) {
	if o.n > 0 {
		f.core.max = o.n
	}
}
