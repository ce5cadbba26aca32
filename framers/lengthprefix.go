package framers

// LengthPrefixHeaderLen is the size of the LengthPrefix header: a 4-byte
// big-endian body length.
const LengthPrefixHeaderLen = 4

// DefaultMaxMessageSize is the default largest message body of [LengthPrefix]
// and [FixedHeader]: 16 MiB.
const DefaultMaxMessageSize = 16 << 20

// LengthPrefixOption configures [NewLengthPrefix]. [WithMaxMessageSize] is
// the only one.
type LengthPrefixOption interface {
	applyLengthPrefix(*LengthPrefix)
}

// LengthPrefix is the seed's ExampleFramer wire format: every message is a
// 4-byte big-endian body length followed by the body. Zero-length messages
// are valid.
//
// On receive it delivers every complete message it has, each as one complete
// Message; it never delivers part of a body. An announced length above the
// maximum fails the connection with a [*TooLargeError] before anything of
// that size is buffered; a stream that ends inside a message fails it with
// [ErrTruncated].
//
// On send a whole message goes down as two Sends (header, then the payload
// itself, not copied). Parts of a partial message (endOfMessage false) are
// buffered, up to the maximum, until the last part, since the header needs
// the total length.
//
// A LengthPrefix serves one connection at a time and needs no locking: its
// only state is the partial message being sent. It implements [Cloner], so
// gotaps gives every connection its own copy.
type LengthPrefix struct {
	core prefixCore
}

var (
	_ Framer            = (*LengthPrefix)(nil)
	_ Cloner            = (*LengthPrefix)(nil)
	_ MessageChecker    = (*LengthPrefix)(nil)
	_ MaxMessageSizer   = (*LengthPrefix)(nil)
	_ MessageOverheader = (*LengthPrefix)(nil)
	_ SendAborter       = (*LengthPrefix)(nil)
)

// NewLengthPrefix returns a length-prefix framer. The maximum message size
// is [DefaultMaxMessageSize] unless [WithMaxMessageSize] says otherwise; it
// is capped at 4 GiB - 1, the largest length the header can carry.
func NewLengthPrefix(opts ...LengthPrefixOption) *LengthPrefix {
	l := &LengthPrefix{core: prefixCore{
		headerLen: LengthPrefixHeaderLen,
		lenSize:   LengthPrefixHeaderLen,
		max:       DefaultMaxMessageSize,
	}}
	for _, o := range opts {
		if o != nil {
			o.applyLengthPrefix(l)
		}
	}
	_ = l.core.limit() // cannot fail: the length does not count the header
	return l
}

// MaxMessageSize returns the largest message body, in bytes, that l sends or
// accepts.
func (l *LengthPrefix) MaxMessageSize() int { return l.core.max }

// MessageOverhead returns the bytes l adds to every message: its header.
func (l *LengthPrefix) MessageOverhead() int { return l.core.headerLen }

// Clone returns a LengthPrefix with the same configuration and no partial
// message in progress.
func (l *LengthPrefix) Clone() Framer {
	return &LengthPrefix{core: l.core.fresh()}
}

// CheckMessage reports a [*TooLargeError] when data exceeds the maximum
// message size, nil otherwise.
func (l *LengthPrefix) CheckMessage(data []byte) error { return l.core.check(len(data)) }

// Start makes the connection ready at once: the format has no handshake.
func (l *LengthPrefix) Start(inst *Instance) { inst.MakeConnectionReady() }

// Stop has nothing to send; it reports MakeConnectionClosed at once.
func (l *LengthPrefix) Stop(inst *Instance) { inst.MakeConnectionClosed() }

// NewSentMessage frames data: header then payload, or, for a partial send,
// buffers data until the last part. A message above the maximum fails the
// connection with a [*TooLargeError]; call [LengthPrefix.CheckMessage]
// first to avoid that. meta is ignored.
func (l *LengthPrefix) NewSentMessage(inst *Instance, data []byte, meta Metadata, endOfMessage bool) {
	l.core.send(inst, data, meta, endOfMessage, nil)
}

// AbortMessage drops the buffered parts of a partial message that failed
// before its last part: nothing of it was sent ([SendAborter]).
func (l *LengthPrefix) AbortMessage(inst *Instance) { l.core.abort() }

// HandleReceivedData delivers every complete message buffered in inst.
func (l *LengthPrefix) HandleReceivedData(inst *Instance) { l.core.receive(inst, nil) }

// MaxBuffered is the most unparsed bytes a connection may need to hold for
// this framer: the maximum message plus its header.
func (l *LengthPrefix) MaxBuffered() int { return l.core.max + LengthPrefixHeaderLen }
