package framers

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// The receive buffer of a message grows with the bytes that arrive, not
// with the size its header announces: a peer that announces 16 MiB and
// sends a few bytes costs a few bytes (plus growMin), not 16 MiB.

// allocs counts what an Instance asks Hooks.Alloc for.
type allocs struct {
	calls, total, peak int
}

// owned is one DeliverOwned call (data aliased, not copied).
type owned struct {
	data, backing []byte
	eom           bool
}

// newCounted returns an Instance whose allocations are counted and whose
// deliveries are kept as they are.
func newCounted() (*allocs, *[]owned, *Instance) {
	a := &allocs{}
	var got []owned
	inst := NewInstance(Hooks{
		Alloc: func(n int) []byte {
			a.calls++
			a.total += n
			a.peak = max(a.peak, n)
			return make([]byte, n)
		},
		DeliverOwned: func(_ Metadata, data, backing []byte, eom bool) {
			got = append(got, owned{data, backing, eom})
		},
	}, 0)
	return a, &got, inst
}

// readInto feeds wire to inst as a reader would: chunk bytes at most per
// read, into the target inst lends when lend is set (as the first framer's
// reader does, with its 16 KiB minimum), into a buffer of its own
// otherwise.
func readInto(f Framer, inst *Instance, wire []byte, chunk int, lend bool) {
	for len(wire) > 0 && !inst.Failed() {
		var tgt []byte
		if lend {
			tgt = inst.ReadTarget(16 << 10)
		}
		if tgt != nil {
			n := copy(tgt[:min(len(tgt), chunk)], wire)
			inst.Received(f, tgt[:n:n], false)
			wire = wire[n:]
			continue
		}
		n := min(chunk, len(wire))
		inst.Received(f, bytes.Clone(wire[:n]), false)
		wire = wire[n:]
	}
}

// header returns a length-prefix header announcing n bytes.
func header(n int) []byte {
	return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

func TestAnnouncedSizeAllocatesWithTheBytes(t *testing.T) {
	const claim = DefaultMaxMessageSize - 1
	for _, body := range []int{0, 10, 1000, 20 << 10, 64 << 10, 300 << 10, 2 << 20} {
		for _, chunk := range []int{1000, 30000, 64 << 10, 256 << 10} {
			for _, lend := range []bool{true, false} {
				name := fmt.Sprintf("body=%d/chunk=%d/lend=%v", body, chunk, lend)
				a, got, inst := newCounted()
				wire := cat(header(claim), bytes.Repeat([]byte{7}, body))
				readInto(NewLengthPrefix(), inst, wire, chunk, lend)
				received := len(wire)
				require.False(t, inst.Failed(), name)
				require.Empty(t, *got, name)
				require.Equal(t, received, inst.Buffered(), name)
				require.LessOrEqual(t, a.peak, 2*received+256<<10, "%s: the largest buffer follows the bytes received", name)
				require.LessOrEqual(t, a.total, 4*received+256<<10, "%s: all buffers together follow the bytes received", name)
			}
		}
	}
}

func TestGrowingMessageSizesArriveWhole(t *testing.T) {
	const g = growMin
	sizes := []int{0, 1, 16<<10 - 1, 16 << 10, 16<<10 + 1, g - 5, g - 4, g - 3, g, g + 1,
		2*g - 4, 2 * g, 2*g + 100, 3 * g, 4*g - 4, 1<<20 - 1, 1 << 20, 1<<20 + 1, 4<<20 + 3}
	type read struct {
		chunk int
		lend  bool
	}
	reads := []read{{1000, true}, {30000, true}, {256 << 10, true}, {1 << 30, true}, {4096, false}, {256 << 10, false}}
	for _, size := range sizes {
		body := make([]byte, size)
		for k := range body {
			body[k] = byte(k*7 + k>>8)
		}
		wire := cat(lp("a"), lp(string(body)), lp("z"))
		for _, r := range reads {
			name := fmt.Sprintf("size=%d/chunk=%d/lend=%v", size, r.chunk, r.lend)
			a, got, inst := newCounted()
			readInto(NewLengthPrefix(), inst, wire, r.chunk, r.lend)
			require.False(t, inst.Failed(), name)
			require.Len(t, *got, 3, "%s: every message in one piece", name)
			for k, want := range [][]byte{[]byte("a"), body, []byte("z")} {
				require.True(t, (*got)[k].eom, name)
				require.True(t, bytes.Equal(want, (*got)[k].data), "%s: message %d intact", name, k)
			}
			if b := (*got)[1].backing; b != nil {
				d := (*got)[1].data
				require.Same(t, &b[len(b)-1], &d[len(d)-1], "%s: the message ends the buffer handed off", name)
			}
			require.LessOrEqual(t, a.total, 4*len(wire)+256<<10, name)
		}
	}
}

// A buffer handed back (Message.Release) with room for the whole message
// takes it whole: one allocation, no copy as it grows, handed off again.
func TestRecycledBufferTakesTheWholeMessage(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	recycled := make([]byte, 2<<20)
	calls := 0
	var got []owned
	inst := NewInstance(Hooks{
		Alloc: func(n int) []byte {
			calls++
			return recycled[:n]
		},
		DeliverOwned: func(_ Metadata, data, backing []byte, eom bool) {
			got = append(got, owned{data, backing, eom})
		},
	}, 0)
	readInto(NewLengthPrefix(), inst, lp(string(body)), 8<<10, true)
	require.Equal(t, 1, calls)
	require.Len(t, got, 1)
	require.Equal(t, body, got[0].data)
	require.Same(t, &recycled[LengthPrefixHeaderLen], &got[0].data[0], "read in place into the handed-back buffer")
	require.Same(t, &recycled[0], &got[0].backing[0], "handed off again")
	require.Len(t, got[0].backing, LengthPrefixHeaderLen+len(body))
}

// FuzzGrowLengthPrefix runs the round trip of FuzzLengthPrefix with a tiny
// first buffer, so that small messages grow their buffer as large ones
// do: read into lent targets (every other one left unused), into recycled
// buffers, and by a reader that uses every target, for which what is
// allocated stays within four times the bytes received.
func FuzzGrowLengthPrefix(f *testing.F) {
	f.Add([]byte("hello world, a longer message than the first buffer"), []byte{3, 1, 0, 9, 40}, uint8(1))
	f.Add(bytes.Repeat([]byte{1}, 300), []byte{31, 31, 2, 63}, uint8(7))
	f.Fuzz(func(t *testing.T, data, cuts []byte, g uint8) {
		grow := int(g%64) + 1
		msgs, _ := messagesFrom(data, cuts)
		var wire []byte
		for _, m := range msgs {
			wire = append(wire, lp(string(m))...)
		}
		chunks := splitAt(wire, cuts)

		rl, lin := newRecorded(0)
		lin.growMin = grow
		feedLending(t, NewLengthPrefix(), lin, chunks)
		if err := rl.err(); err != nil {
			t.Fatalf("receive into targets: %v", err)
		}
		sameMessages(t, rl.messages(), msgs)

		rc, cin := newRecycling()
		cin.growMin = grow
		feedLending(t, NewLengthPrefix(), cin, chunks)
		if err := rc.err(); err != nil {
			t.Fatalf("receive into recycled buffers: %v", err)
		}
		sameMessages(t, rc.messages(), msgs)

		rf, fin := newFreeing()
		fin.growMin = grow
		feedLending(t, NewLengthPrefix(), fin, chunks)
		if err := rf.err(); err != nil {
			t.Fatalf("receive into freed buffers: %v", err)
		}
		sameMessages(t, rf.messages(), msgs)

		r := &recorder{}
		h := r.hooks()
		total := 0
		h.Alloc = func(n int) []byte { total += n; return make([]byte, n) }
		inst := NewInstance(h, 0)
		inst.growMin = grow
		lpf := NewLengthPrefix()
		for _, c := range chunks {
			for len(c) > 0 {
				if tgt := inst.ReadTarget(1); tgt != nil {
					n := copy(tgt, c)
					inst.Received(lpf, tgt[:n:n], false)
					c = c[n:]
					continue
				}
				inst.Received(lpf, bytes.Clone(c), false)
				c = nil
			}
		}
		inst.Received(lpf, nil, true)
		if err := r.err(); err != nil {
			t.Fatalf("receive: %v", err)
		}
		sameMessages(t, r.messages(), msgs)
		for _, d := range r.deliveries {
			if !d.eom {
				t.Fatalf("a message delivered in parts")
			}
		}
		if total > 4*len(wire)+8*len(msgs) {
			t.Fatalf("allocated %d bytes for %d received", total, len(wire))
		}
	})
}

// newFreeing is newRecycling with Hooks.Free: the buffers the Instance
// outgrew are scribbled over and handed out again (largest first), so a
// buffer the Instance still used after Free would corrupt a message.
func newFreeing() (*recorder, *Instance) {
	r, inst := newRecycling()
	var free [][]byte
	alloc := inst.hooks.Alloc
	inst.hooks.Free = func(b []byte) {
		b = b[:cap(b)]
		for k := range b {
			b[k] = 0xCC
		}
		free = append(free, b)
	}
	inst.hooks.Alloc = func(n int) []byte {
		best := -1
		for k, b := range free {
			if cap(b) >= n && (best < 0 || cap(b) > cap(free[best])) {
				best = k
			}
		}
		if best < 0 {
			return alloc(n)
		}
		b := free[best]
		free = append(free[:best], free[best+1:]...)
		return b[:n]
	}
	return r, inst
}

// The buffers a growing message outgrows go back through Hooks.Free (none
// that a delivered message lives in). Once the peer has sent a message of
// a size, the next one of that size is received in one buffer of its
// size, without growing.
func TestOutgrownBuffersAreFreed(t *testing.T) {
	var allocated, freed [][]byte
	var got []owned
	inst := NewInstance(Hooks{
		Alloc: func(n int) []byte {
			for k, b := range freed {
				if cap(b) >= n {
					freed = append(freed[:k], freed[k+1:]...)
					return b[:n]
				}
			}
			b := make([]byte, n)
			allocated = append(allocated, b)
			return b
		},
		Free: func(b []byte) { freed = append(freed, b) },
		DeliverOwned: func(_ Metadata, data, backing []byte, eom bool) {
			got = append(got, owned{data, backing, eom})
		},
	}, 0)
	body := bytes.Repeat([]byte("abcdefgh"), 128<<10) // 1 MiB
	readInto(NewLengthPrefix(), inst, lp(string(body)), 64<<10, true)
	require.Len(t, got, 1)
	require.Equal(t, body, got[0].data)
	require.Len(t, allocated, 5, "64 KiB doubling to 1 MiB")
	require.Len(t, freed, 4, "all but the last")
	for k, b := range freed {
		require.Same(t, &allocated[k][0], &b[0])
		require.NotSame(t, &b[0], &got[0].backing[0])
	}
	largest := freed[3]

	body2 := bytes.Repeat([]byte("ijklmnop"), 128<<10)
	readInto(NewLengthPrefix(), inst, lp(string(body2)), 64<<10, true)
	require.Len(t, got, 2)
	require.Equal(t, body2, got[1].data)
	require.Len(t, allocated, 6, "one new buffer")
	require.Len(t, allocated[5], len(body2)+LengthPrefixHeaderLen, "of the whole message")
	require.Same(t, &allocated[5][0], &got[1].backing[0])
	require.Len(t, freed, 4, "nothing outgrown")
	require.Contains(t, freed, largest)
}

// A message's buffer may start as large as the largest message the peer
// sent before, not larger: a peer that announces more and stalls holds
// no more than that.
func TestAnnouncedSizeAfterARealMessage(t *testing.T) {
	a, got, inst := newCounted()
	f := NewLengthPrefix()
	body := make([]byte, 300<<10)
	readInto(f, inst, lp(string(body)), 64<<10, true)
	require.Len(t, *got, 1)
	proven := len(body) + LengthPrefixHeaderLen

	*a = allocs{}
	wire := cat(header(DefaultMaxMessageSize-1), make([]byte, 1000))
	readInto(f, inst, wire, 64<<10, true)
	require.Len(t, *got, 1)
	require.Equal(t, len(wire), inst.Buffered())
	require.Len(t, inst.ReadTarget(16<<10), proven-len(wire), "the reader's next target")
	require.Equal(t, proven, a.total, "one buffer the size of the message before")
}
