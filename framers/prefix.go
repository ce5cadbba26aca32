package framers

import (
	"encoding/binary"
	"fmt"
	"math"
)

// prefixCore is the engine shared by LengthPrefix and FixedHeader: a
// fixed-size header that carries a big-endian body length, followed by the
// body. It holds the configuration and the one piece of per-connection
// state, the parts of a partially sent message.
type prefixCore struct {
	headerLen      int
	lenOff         int
	lenSize        int
	includesHeader bool
	max            int // largest body, already clamped by limit()

	// partial send: header room followed by the parts sent so far.
	sending     bool
	pending     []byte
	pendingMeta Metadata

	// slab is where the headers of whole messages are cut from: one
	// allocation serves many sends (a cut header is never reused; the slab
	// goes when its last header has been written).
	slab []byte
}

// newHeader returns a fresh header-sized slice, cut from the slab.
func (c *prefixCore) newHeader() []byte {
	if len(c.slab) < c.headerLen {
		c.slab = make([]byte, c.headerLen*32)
	}
	h := c.slab[:c.headerLen:c.headerLen]
	c.slab = c.slab[c.headerLen:]
	return h
}

// limit clamps max to what the length field can express and what an int can
// hold once the header is added.
func (c *prefixCore) limit() error {
	field := uint64(math.MaxUint64)
	if c.lenSize < 8 {
		field = 1<<(8*uint(c.lenSize)) - 1
	}
	if c.includesHeader {
		if field < uint64(c.headerLen) {
			return fmt.Errorf("framers: a %d-byte length field cannot count a %d-byte header", c.lenSize, c.headerLen)
		}
		field -= uint64(c.headerLen)
	}
	field = min(field, uint64(math.MaxInt-c.headerLen))
	if uint64(c.max) > field {
		c.max = int(field)
	}
	return nil
}

// fresh returns a copy of the configuration without per-connection state.
func (c *prefixCore) fresh() prefixCore {
	return prefixCore{
		headerLen:      c.headerLen,
		lenOff:         c.lenOff,
		lenSize:        c.lenSize,
		includesHeader: c.includesHeader,
		max:            c.max,
	}
}

func (c *prefixCore) readLength(hdr []byte) uint64 {
	f := hdr[c.lenOff : c.lenOff+c.lenSize]
	switch c.lenSize {
	case 1:
		return uint64(f[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(f))
	case 4:
		return uint64(binary.BigEndian.Uint32(f))
	default:
		return binary.BigEndian.Uint64(f)
	}
}

func (c *prefixCore) writeLength(hdr []byte, body int) {
	v := uint64(body)
	if c.includesHeader {
		v += uint64(c.headerLen)
	}
	f := hdr[c.lenOff : c.lenOff+c.lenSize]
	switch c.lenSize {
	case 1:
		f[0] = byte(v)
	case 2:
		binary.BigEndian.PutUint16(f, uint16(v))
	case 4:
		binary.BigEndian.PutUint32(f, uint32(v))
	default:
		binary.BigEndian.PutUint64(f, v)
	}
}

// bodyLen decodes and checks the body length announced by hdr.
func (c *prefixCore) bodyLen(hdr []byte) (int, error) {
	n := c.readLength(hdr)
	if c.includesHeader {
		if n < uint64(c.headerLen) {
			return 0, fmt.Errorf("%w: length field %d is shorter than the %d-byte header", ErrDeframingFailed, n, c.headerLen)
		}
		n -= uint64(c.headerLen)
	}
	if n > uint64(c.max) {
		return 0, &TooLargeError{Size: n, Max: uint64(c.max)}
	}
	return int(n), nil
}

func (c *prefixCore) check(size int) error {
	if size > c.max {
		return &TooLargeError{Size: uint64(size), Max: uint64(c.max)}
	}
	return nil
}

// receive delivers every complete message in the buffer. It consumes a
// header only once the whole body is buffered, so it can stop at any point
// and resume on the next call; the announced length is checked against the
// maximum before the body is waited for.
func (c *prefixCore) receive(inst *Instance, header func(hdr []byte) Metadata) {
	for !inst.Failed() {
		hdr, ok := inst.Parse(c.headerLen, c.headerLen)
		if !ok {
			if inst.EndOfStream() && inst.Buffered() > 0 {
				inst.FailConnection(fmt.Errorf("%w: %d bytes of a %d-byte header", ErrTruncated, inst.Buffered(), c.headerLen))
			}
			return
		}
		n, err := c.bodyLen(hdr)
		if err != nil {
			inst.FailConnection(err)
			return
		}
		if _, ok := inst.Parse(c.headerLen+n, 0); !ok {
			if inst.EndOfStream() {
				inst.FailConnection(fmt.Errorf("%w: %d of %d body bytes", ErrTruncated, inst.Buffered()-c.headerLen, n))
			}
			return
		}
		var meta Metadata
		if header != nil {
			meta = header(hdr)
		}
		inst.AdvanceReceiveCursor(c.headerLen)
		inst.DeliverAndAdvanceReceiveCursor(meta, n, true)
	}
}

// send frames data. A whole message goes down as two Send calls, header then
// payload, without copying the payload. Parts of a partial message are
// copied into one buffer (bounded by the maximum) behind room for the
// header, because the length is known only at the end; the last call sends
// that buffer and then its own data.
func (c *prefixCore) send(inst *Instance, data []byte, meta Metadata, eom bool, fill func(hdr []byte, meta Metadata)) {
	if !eom || c.sending {
		if !c.sending {
			c.sending = true
			c.pending = make([]byte, c.headerLen, c.headerLen+len(data))
			c.pendingMeta = meta
		}
		size := uint64(len(c.pending)-c.headerLen) + uint64(len(data))
		if size > uint64(c.max) {
			// gotaps checks the parts' size before they come here
			// (MaxMessageSizer): a SendError, not this
			c.reset()
			inst.FailConnection(&TooLargeError{Size: size, Max: uint64(c.max)})
			return
		}
		if !eom {
			c.pending = append(c.pending, data...)
			return
		}
		buf := c.pending
		if meta == nil {
			meta = c.pendingMeta
		}
		c.reset()
		hdr := buf[:c.headerLen]
		if fill != nil {
			fill(hdr, meta)
		}
		c.writeLength(hdr, int(size))
		inst.Send(buf)
		if len(data) > 0 {
			inst.Send(data)
		}
		return
	}
	if err := c.check(len(data)); err != nil {
		inst.FailConnection(err)
		return
	}
	hdr := c.newHeader()
	if fill != nil {
		fill(hdr, meta)
	}
	c.writeLength(hdr, len(data))
	inst.Send(hdr)
	if len(data) > 0 {
		inst.Send(data)
	}
}

// abort drops the parts of a partial message (SendAborter): nothing of it
// was sent, the header waits for the last part.
func (c *prefixCore) abort() { c.reset() }

func (c *prefixCore) reset() {
	c.sending = false
	c.pending = nil
	c.pendingMeta = nil
}
