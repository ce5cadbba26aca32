package framers

import (
	"bytes"
	"fmt"
	"testing"
)

// The fuzz targets share one shape:
//
//	data  - the bytes to deframe, and the payload pool for the round trip;
//	cuts  - where to split reads (and how to cut data into messages);
//	cfg   - the framer's configuration.
//
// (a) data split at cuts is fed to a fresh Instance: no panic, never more
// bytes delivered than fed, only whole messages, nothing after a failure,
// and the buffer never above the framer's maximum plus its header;
// (b) messages cut from data are framed with NewSentMessage (some as two
// partial sends), the wire bytes are fed back split at cuts, and the same
// messages must come out in order.

// splitAt cuts b into reads whose sizes come from cuts (0..31, so empty
// reads happen); what is left after the cuts runs out is one last read.
func splitAt(b, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := min(int(c%32), len(b))
		out = append(out, b[:n])
		b = b[n:]
		if len(b) == 0 {
			break
		}
	}
	return append(out, b)
}

// messagesFrom cuts data into at most 64 messages whose sizes come from
// cuts read backwards (0..63); split reports which to send as two parts.
func messagesFrom(data, cuts []byte) (msgs [][]byte, split []bool) {
	if len(cuts) == 0 {
		return [][]byte{data}, []bool{false}
	}
	for i := 0; len(msgs) < 64 && (len(data) > 0 || i < len(cuts)); i++ {
		c := cuts[len(cuts)-1-i%len(cuts)]
		n := min(int(c%64), len(data))
		msgs = append(msgs, data[:n])
		split = append(split, c&0x80 != 0)
		data = data[n:]
	}
	return msgs, split
}

// checkFeed is part (a).
func checkFeed(t *testing.T, f Framer, data, cuts []byte, bound int) {
	t.Helper()
	r, inst := newRecorded(0)
	f.Start(inst)
	delivered := 0
	chunks := splitAt(data, cuts)
	for i, c := range chunks {
		inst.Received(f, bytes.Clone(c), i == len(chunks)-1)
		if inst.Buffered() > bound {
			t.Fatalf("buffered %d bytes; bound %d", inst.Buffered(), bound)
		}
	}
	for _, d := range r.deliveries {
		delivered += len(d.data)
		if !d.eom {
			t.Fatalf("partial delivery")
		}
	}
	if delivered > len(data) {
		t.Fatalf("delivered %d bytes from %d", delivered, len(data))
	}
	if r.afterFail > 0 || len(r.fails) > 1 {
		t.Fatalf("activity after failure: %d, fails %v", r.afterFail, r.fails)
	}
	if len(r.fails) == 0 && inst.Buffered() != 0 {
		t.Fatalf("clean end of stream with %d bytes left", inst.Buffered())
	}
}

// roundTrip is part (b). It frames msgs with one Instance of f and deframes
// with another, returning both recorders.
func roundTrip(t *testing.T, f Framer, msgs [][]byte, split []bool, meta func(i int) Metadata, cuts []byte) (*recorder, *recorder) {
	t.Helper()
	snd := Instantiate(f)
	rs, out := newRecorded(0)
	for i, m := range msgs {
		var md Metadata
		if meta != nil {
			md = meta(i)
		}
		if split[i] {
			h := len(m) / 2
			snd.NewSentMessage(out, m[:h], md, false)
			snd.NewSentMessage(out, m[h:], md, true)
		} else {
			snd.NewSentMessage(out, m, md, true)
		}
	}
	if err := rs.err(); err != nil {
		t.Fatalf("send: %v", err)
	}
	rcv := Instantiate(f)
	rr, in := newRecorded(0)
	wire := rs.wire()
	chunks := splitAt(wire, cuts)
	for i, c := range chunks {
		in.Received(rcv, bytes.Clone(c), i == len(chunks)-1)
	}
	if err := rr.err(); err != nil {
		t.Fatalf("receive: %v", err)
	}
	sameMessages(t, rr.messages(), msgs)
	// again, reading into the targets the Instance lends (every other
	// target is left unused, and must stay untouched)
	rl, lin := newRecorded(0)
	feedLending(t, Instantiate(f), lin, chunks)
	if err := rl.err(); err != nil {
		t.Fatalf("receive into targets: %v", err)
	}
	sameMessages(t, rl.messages(), msgs)
	// and again with every handed-off buffer scribbled over and reused
	// for later messages, as Message.Release lets an application do: the
	// Instance must no longer read or write a buffer it handed off
	rc, cin := newRecycling()
	feedLending(t, Instantiate(f), cin, chunks)
	if err := rc.err(); err != nil {
		t.Fatalf("receive into recycled buffers: %v", err)
	}
	sameMessages(t, rc.messages(), msgs)
	return rs, rr
}

// newRecycling returns a recorder and an Instance whose Alloc hands out
// buffers its DeliverOwned got back (scribbled over first), and fresh
// buffers filled with garbage otherwise.
func newRecycling() (*recorder, *Instance) {
	r := &recorder{}
	h := r.hooks()
	deliver := h.Deliver
	var free [][]byte
	h.Deliver = nil
	h.DeliverOwned = func(meta Metadata, data, backing []byte, eom bool) {
		deliver(meta, data, eom) // the recorder copies data out
		if backing != nil {
			if !eom || len(data) == 0 || &data[len(data)-1] != &backing[len(backing)-1] {
				r.fails = append(r.fails, fmt.Errorf("handed off a buffer data is not the tail of"))
			}
			for k := range backing[:cap(backing)] {
				backing[:cap(backing)][k] = 0xDD
			}
			free = append(free, backing[:cap(backing)])
		}
	}
	h.Alloc = func(n int) []byte {
		for k, b := range free {
			if cap(b) >= n {
				free = append(free[:k], free[k+1:]...)
				return b[:n]
			}
		}
		b := make([]byte, n)
		for k := range b {
			b[k] = 0xAB
		}
		return b
	}
	return r, NewInstance(h, 0)
}

func sameMessages(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

// feedLending feeds chunks to inst as a reader that uses ReadTarget would:
// the bytes go into the lent target when there is one. Every other target
// is instead filled with a marker and kept aside while the bytes are fed
// from elsewhere; the Instance must never write into it.
func feedLending(t *testing.T, f Framer, inst *Instance, chunks [][]byte) {
	t.Helper()
	skip := false
	for i, c := range chunks {
		last := i == len(chunks)-1
		for len(c) > 0 {
			tgt := inst.ReadTarget(1)
			if tgt == nil {
				break
			}
			if skip = !skip; skip {
				for k := range tgt {
					tgt[k] = 0xEE
				}
				n := min(len(tgt), len(c))
				inst.Received(f, bytes.Clone(c[:n]), last && n == len(c))
				c = c[n:]
				for k := range tgt {
					if tgt[k] != 0xEE {
						t.Fatalf("the Instance wrote into a target it lent")
					}
				}
				continue
			}
			n := copy(tgt, c)
			inst.Received(f, tgt[:n:n], last && n == len(c))
			c = c[n:]
		}
		if len(c) > 0 || (last && len(chunks[i]) == 0) {
			inst.Received(f, bytes.Clone(c), last)
		}
	}
}

func FuzzLengthPrefix(f *testing.F) {
	f.Add(cat(lp("hello"), lp("world")), []byte{3, 1, 0, 9}, uint16(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'x'}, []byte{2}, uint16(0))
	f.Add(cat(lp(""), lp("a")), []byte{1, 1, 1, 1, 1}, uint16(3))
	f.Fuzz(func(t *testing.T, data, cuts []byte, cfg uint16) {
		max := int(cfg%512) + 1
		lp := NewLengthPrefix(WithMaxMessageSize(max))
		checkFeed(t, lp, data, cuts, max+LengthPrefixHeaderLen)

		msgs, split := messagesFrom(data, cuts)
		var ok [][]byte
		var oks []bool
		for i, m := range msgs {
			if lp.CheckMessage(m) == nil {
				ok, oks = append(ok, m), append(oks, split[i])
			}
		}
		roundTrip(t, lp, ok, oks, nil, cuts)
	})
}

var fuzzSeps = [][]byte{[]byte("\n"), []byte("\r\n"), {0}, []byte("END"), []byte("aab"), []byte("aba")}

func FuzzDelimiter(f *testing.F) {
	f.Add([]byte("hello\nworld\nlast"), []byte{4, 0, 7}, uint16(0))
	f.Add([]byte("a\r\nb\r\r\n\r\n"), []byte{1, 1, 1}, uint16(1))
	f.Add([]byte("xaaabENDaab"), []byte{2, 5}, uint16(4|20<<3))
	f.Add([]byte("ababa"), []byte{2, 0x82, 1}, uint16(5|6<<3))
	f.Fuzz(func(t *testing.T, data, cuts []byte, cfg uint16) {
		sep := fuzzSeps[int(cfg%8)%len(fuzzSeps)]
		max := int(cfg>>3%512) + 1
		d := NewDelimiter(sep, WithMaxMessageSize(max))
		checkFeed(t, d, data, cuts, max+len(sep))

		msgs, split := messagesFrom(data, cuts)
		var ok [][]byte
		var oks []bool
		for i, m := range msgs {
			if d.CheckMessage(m) == nil {
				ok, oks = append(ok, m), append(oks, split[i])
			}
		}
		roundTrip(t, d, ok, oks, nil, cuts)
	})
}

// fixedFromCfg derives a valid FixedHeader from cfg: field size from bits
// 0-1, extra header bytes from bits 2-4, offset from bits 5-7, includes
// header from bit 8, max from bits 9-15.
func fixedFromCfg(cfg uint16) (*FixedHeader, error) {
	size := []int{1, 2, 4, 8}[cfg&3]
	headerLen := size + int(cfg>>2&7)
	off := int(cfg>>5&7) % (headerLen - size + 1)
	max := int(cfg>>9)*8 + 1
	return NewFixedHeader(headerLen, off, size,
		WithLengthIncludesHeader(cfg&0x100 != 0), WithMaxMessageSize(max))
}

func FuzzFixedHeader(f *testing.F) {
	f.Add(fh("AB", "1234", "hello"), []byte{3, 9, 1}, uint16(1|6<<2|2<<5|20<<9))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0}, []byte{1}, uint16(2))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8}, []byte{}, uint16(3|0x100))
	f.Fuzz(func(t *testing.T, data, cuts []byte, cfg uint16) {
		fx, err := fixedFromCfg(cfg)
		if err != nil {
			t.Fatalf("config %#x: %v", cfg, err)
		}
		checkFeed(t, fx, data, cuts, fx.MaxMessageSize()+fx.HeaderLen())

		msgs, split := messagesFrom(data, cuts)
		var ok [][]byte
		var oks []bool
		for i, m := range msgs {
			if fx.CheckMessage(m) == nil {
				ok, oks = append(ok, m), append(oks, split[i])
			}
		}
		// Each message's header comes from the payload pool, so headers of
		// every length (short, exact, long) are sent.
		hdrOf := func(i int) []byte {
			if len(data) == 0 {
				return nil
			}
			return data[i%len(data):][:min(len(data)-i%len(data), i%(fx.HeaderLen()+2))]
		}
		_, rr := roundTrip(t, fx, ok, oks, func(i int) Metadata {
			return Metadata{HeaderMetadataKey: hdrOf(i)}
		}, cuts)
		if fx.HeaderLen() == fx.core.lenSize {
			return
		}
		for i, d := range rr.deliveries {
			want := make([]byte, fx.HeaderLen())
			copy(want, hdrOf(i))
			clear(want[fx.core.lenOff : fx.core.lenOff+fx.core.lenSize])
			got, _ := d.meta[HeaderMetadataKey].([]byte)
			if !bytes.Equal(got, want) {
				t.Fatalf("header %d: got %x, want %x", i, got, want)
			}
		}
	})
}
