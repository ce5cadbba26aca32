package framers

import "fmt"

// HeaderMetadataKey is the framer Metadata key under which [FixedHeader]
// exposes a received header and reads the header to send.
const HeaderMetadataKey = "header"

// MaxFixedHeaderLen is the largest header [NewFixedHeader] accepts: 64 KiB.
const MaxFixedHeaderLen = 64 << 10

// FixedHeaderOption configures [NewFixedHeader]: [WithMaxMessageSize] or
// [WithLengthIncludesHeader].
type FixedHeaderOption interface {
	applyFixedHeader(*FixedHeader)
}

type includesHeaderOption bool

func (o includesHeaderOption) applyFixedHeader(f *FixedHeader) { f.core.includesHeader = bool(o) }

// WithLengthIncludesHeader sets whether the length field counts the header
// as well as the body. The default is false: it counts the body only.
func WithLengthIncludesHeader(includes bool) FixedHeaderOption {
	return includesHeaderOption(includes)
}

// FixedHeader frames messages behind a fixed-size header that carries the
// body length as a big-endian unsigned field of 1, 2, 4 or 8 bytes at a
// fixed offset. The other header bytes belong to the application:
//
//   - on receive, a copy of the whole header, with the length field zeroed,
//     is attached as framer Metadata under [HeaderMetadataKey] ([]byte); the
//     Metadata is nil when the header is the length field alone;
//   - on send, the header is taken from Metadata key [HeaderMetadataKey]
//     ([]byte): a shorter value is zero-filled, a longer one truncated, an
//     absent one (or one of another type) gives an all-zero header. The
//     framer always writes the length field itself.
//
// Receive and send behave as for [LengthPrefix]: every complete message is
// delivered whole, the announced length is checked against the maximum
// before the body is waited for ([*TooLargeError]), a stream ending inside a
// message fails with [ErrTruncated], a length field smaller than the header
// (with [WithLengthIncludesHeader]) fails with [ErrDeframingFailed], and
// partial sends are buffered up to the maximum until the last part.
//
// A FixedHeader serves one connection at a time and needs no locking. It
// implements [Cloner], so gotaps gives every connection its own copy.
type FixedHeader struct {
	core prefixCore
}

var (
	_ Framer            = (*FixedHeader)(nil)
	_ Cloner            = (*FixedHeader)(nil)
	_ MessageChecker    = (*FixedHeader)(nil)
	_ MaxMessageSizer   = (*FixedHeader)(nil)
	_ MessageOverheader = (*FixedHeader)(nil)
	_ SendAborter       = (*FixedHeader)(nil)
)

// NewFixedHeader returns a framer for headers of headerLen bytes whose body
// length is the big-endian field of lengthSize bytes (1, 2, 4 or 8) at
// lengthOffset. The maximum message size is [DefaultMaxMessageSize] unless
// [WithMaxMessageSize] says otherwise; it is lowered to what the length
// field can express. It returns an error, never panics, when the field does
// not fit in the header, headerLen is outside 1..[MaxFixedHeaderLen], or
// (with [WithLengthIncludesHeader]) the field cannot even count the header.
func NewFixedHeader(headerLen, lengthOffset, lengthSize int, opts ...FixedHeaderOption) (*FixedHeader, error) {
	switch lengthSize {
	case 1, 2, 4, 8:
	default:
		return nil, fmt.Errorf("framers: length field size %d is not 1, 2, 4 or 8", lengthSize)
	}
	if headerLen < 1 || headerLen > MaxFixedHeaderLen {
		return nil, fmt.Errorf("framers: header length %d is outside 1..%d", headerLen, MaxFixedHeaderLen)
	}
	if lengthOffset < 0 || lengthOffset > headerLen-lengthSize {
		return nil, fmt.Errorf("framers: a %d-byte length field at offset %d does not fit a %d-byte header", lengthSize, lengthOffset, headerLen)
	}
	f := &FixedHeader{core: prefixCore{
		headerLen: headerLen,
		lenOff:    lengthOffset,
		lenSize:   lengthSize,
		max:       DefaultMaxMessageSize,
	}}
	for _, o := range opts {
		if o != nil {
			o.applyFixedHeader(f)
		}
	}
	if err := f.core.limit(); err != nil {
		return nil, err
	}
	return f, nil
}

// HeaderLen returns the header size in bytes.
func (f *FixedHeader) HeaderLen() int { return f.core.headerLen }

// MaxMessageSize returns the largest message body, in bytes, that f sends
// or accepts.
func (f *FixedHeader) MaxMessageSize() int { return f.core.max }

// MessageOverhead returns the bytes f adds to every message: its header.
func (f *FixedHeader) MessageOverhead() int { return f.core.headerLen }

// Clone returns a FixedHeader with the same configuration and no partial
// message in progress.
func (f *FixedHeader) Clone() Framer {
	return &FixedHeader{core: f.core.fresh()}
}

// CheckMessage reports a [*TooLargeError] when data exceeds the maximum
// message size, nil otherwise.
func (f *FixedHeader) CheckMessage(data []byte) error {
	return f.core.check(len(data))
}

// Start makes the connection ready at once: the format has no handshake.
func (f *FixedHeader) Start(inst *Instance) { inst.MakeConnectionReady() }

// Stop has nothing to send; it reports MakeConnectionClosed at once.
func (f *FixedHeader) Stop(inst *Instance) { inst.MakeConnectionClosed() }

// NewSentMessage frames data behind a header built from meta (see
// [FixedHeader]). For a partial send the header comes from the last part's
// meta, or the first part's when the last has none. A message above the
// maximum fails the connection with a [*TooLargeError]; call
// [FixedHeader.CheckMessage] first to avoid that.
func (f *FixedHeader) NewSentMessage(inst *Instance, data []byte, meta Metadata, endOfMessage bool) {
	f.core.send(inst, data, meta, endOfMessage, f.fillHeader)
}

// AbortMessage drops the buffered parts of a partial message that failed
// before its last part: nothing of it was sent ([SendAborter]).
func (f *FixedHeader) AbortMessage(inst *Instance) { f.core.abort() }

// HandleReceivedData delivers every complete message buffered in inst, each
// with its header as Metadata.
func (f *FixedHeader) HandleReceivedData(inst *Instance) {
	var hook func([]byte) Metadata
	if f.core.headerLen > f.core.lenSize {
		hook = f.headerMeta
	}
	f.core.receive(inst, hook)
}

func (f *FixedHeader) fillHeader(hdr []byte, meta Metadata) {
	if h, ok := meta[HeaderMetadataKey].([]byte); ok {
		copy(hdr, h)
	}
}

func (f *FixedHeader) headerMeta(hdr []byte) Metadata {
	h := make([]byte, len(hdr))
	copy(h, hdr)
	clear(h[f.core.lenOff : f.core.lenOff+f.core.lenSize])
	return Metadata{HeaderMetadataKey: h}
}

// MaxBuffered is the most unparsed bytes a connection may need to hold for
// this framer: the maximum message plus its header.
func (f *FixedHeader) MaxBuffered() int { return f.core.max + f.core.headerLen }
