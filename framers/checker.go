package framers

// MessageChecker is implemented by framers that can tell, before a Message
// is handed to NewSentMessage, whether they are able to frame it. The
// NewSentMessage event cannot return an error, so gotaps calls CheckMessage
// from Connection.Send first and reports a failure as a SendError for that
// Message instead of framing corrupt data.
//
// CheckMessage sees one Send call's data: for a partial send it checks that
// part only. It must not change the framer's state, so it is safe to call
// from any goroutine as long as the framer's configuration is not being
// changed (the built-in framers are immutable after construction).
type MessageChecker interface {
	CheckMessage(data []byte) error
}

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
