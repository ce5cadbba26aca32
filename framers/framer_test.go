package framers

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// funcFramer is a Framer built from functions; nil ones do nothing.
type funcFramer struct {
	start, stop func(*Instance)
	send        func(*Instance, []byte, Metadata, bool)
	recv        func(*Instance)
}

func (f *funcFramer) Start(i *Instance) {
	if f.start != nil {
		f.start(i)
	}
}

func (f *funcFramer) Stop(i *Instance) {
	if f.stop != nil {
		f.stop(i)
	}
}

func (f *funcFramer) NewSentMessage(i *Instance, d []byte, m Metadata, eom bool) {
	if f.send != nil {
		f.send(i, d, m, eom)
	}
}

func (f *funcFramer) HandleReceivedData(i *Instance) {
	if f.recv != nil {
		f.recv(i)
	}
}

// oneByteLen is a framer with a 1-byte length header that hands the body to
// DeliverAndAdvanceReceiveCursor at once, so long bodies are earmarked. It
// handles one message per call, relying on the Instance to call again.
func oneByteLen() Framer {
	return &funcFramer{recv: func(i *Instance) {
		h, ok := i.Parse(1, 1)
		if !ok {
			return
		}
		n := int(h[0])
		i.AdvanceReceiveCursor(1)
		i.DeliverAndAdvanceReceiveCursor(nil, n, true)
	}}
}

func TestInstanceParse(t *testing.T) {
	tests := []struct {
		name     string
		min, max int
		want     string
		ok       bool
	}{
		{"all", 0, -1, "hello", true},
		{"min equals length", 5, -1, "hello", true},
		{"min above length", 6, -1, "", false},
		{"max limits", 2, 3, "hel", true},
		{"max zero", 5, 0, "", true},
		{"negative min", -3, 2, "he", true},
		{"max above length", 1, 99, "hello", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, inst := newRecorded(0)
			inst.Received(&funcFramer{}, []byte("hello"), false)
			got, ok := inst.Parse(tt.min, tt.max)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, string(got))
			require.Equal(t, len(got), cap(got), "Parse must not expose spare capacity")
			require.Equal(t, 5, inst.Buffered(), "Parse must not consume")
			require.NoError(t, r.err())
		})
	}
}

func TestInstanceParseAboveMaxBufferedFails(t *testing.T) {
	r, inst := newRecorded(8)
	inst.Received(&funcFramer{}, []byte("abc"), false)
	_, ok := inst.Parse(9, -1)
	require.False(t, ok)
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)
	require.True(t, inst.Failed())
}

func TestInstanceAdvanceReceiveCursor(t *testing.T) {
	_, inst := newRecorded(0)
	inst.Received(&funcFramer{}, []byte("abcdef"), false)
	inst.AdvanceReceiveCursor(0)
	inst.AdvanceReceiveCursor(-2)
	require.Equal(t, 6, inst.Buffered())
	inst.AdvanceReceiveCursor(2)
	got, _ := inst.Parse(0, -1)
	require.Equal(t, "cdef", string(got))
	inst.AdvanceReceiveCursor(100)
	require.Equal(t, 0, inst.Buffered())
}

func TestInstanceDeliverAndAdvanceReceiveCursor(t *testing.T) {
	// Two whole messages in one read.
	r, inst := newRecorded(0)
	f := oneByteLen()
	inst.Received(f, cat([]byte{3}, []byte("abc"), []byte{0}, []byte{2}, []byte("de")), false)
	require.Equal(t, []delivery{
		{data: []byte("abc"), eom: true},
		{data: []byte{}, eom: true},
		{data: []byte("de"), eom: true},
	}, normalise(r.deliveries))
	require.Equal(t, 0, inst.Buffered())
}

func TestInstanceEarmark(t *testing.T) {
	r, inst := newRecorded(0)
	f := oneByteLen()
	// Header and 2 of 10 body bytes: delivered as a partial message.
	inst.Received(f, cat([]byte{10}, []byte("01")), false)
	// The rest arrives in pieces; the last piece also carries the next
	// message, which must be parsed normally.
	inst.Received(f, []byte("234"), false)
	inst.Received(f, []byte("56"), false)
	inst.Received(f, cat([]byte("789"), []byte{1}, []byte("x")), false)
	require.Equal(t, []delivery{
		{data: []byte("01"), eom: false},
		{data: []byte("234"), eom: false},
		{data: []byte("56"), eom: false},
		{data: []byte("789"), eom: true},
		{data: []byte("x"), eom: true},
	}, normalise(r.deliveries))
	require.Equal(t, []string{"0123456789", "x"}, strs(r.messages()))
	require.Equal(t, 0, inst.Buffered())
	require.NoError(t, r.err())
}

func TestInstanceDeliver(t *testing.T) {
	r, inst := newRecorded(0)
	up := &funcFramer{recv: func(i *Instance) {
		b, _ := i.Parse(0, -1)
		out := []byte(string(b) + "!")
		i.AdvanceReceiveCursor(len(b))
		i.Deliver(Metadata{"k": 1}, out, true)
	}}
	inst.Received(up, []byte("hey"), false)
	require.Equal(t, []delivery{{meta: Metadata{"k": 1}, data: []byte("hey!"), eom: true}}, r.deliveries)
}

func TestInstanceStartPassthrough(t *testing.T) {
	r, inst := newRecorded(0)
	f := &funcFramer{recv: func(i *Instance) {
		b, ok := i.Parse(3, 3)
		if !ok {
			return
		}
		if string(b) == "GO\n" {
			i.AdvanceReceiveCursor(3)
			i.StartPassthrough()
		}
	}}
	inst.Received(f, []byte("GO"), false)
	require.False(t, inst.InPassthrough())
	inst.Received(f, []byte("\nraw"), false)
	require.True(t, inst.InPassthrough())
	inst.Received(f, []byte("more"), true)
	require.Equal(t, 1, r.passed)
	require.Equal(t, []delivery{
		{data: []byte("raw"), eom: false},
		{data: []byte("more"), eom: true},
	}, r.deliveries)
	inst.StartPassthrough()
	require.Equal(t, 1, r.passed, "StartPassthrough is idempotent")
}

func TestInstanceFailConnectionStopsDelivery(t *testing.T) {
	r, inst := newRecorded(0)
	boom := errors.New("boom")
	f := &funcFramer{recv: func(i *Instance) {
		b, ok := i.Parse(1, 1)
		if !ok {
			return
		}
		if b[0] == 'X' {
			i.FailConnection(boom)
			return
		}
		i.DeliverAndAdvanceReceiveCursor(nil, 1, true)
	}}
	inst.Received(f, []byte("abXcd"), false)
	require.Equal(t, []string{"a", "b"}, strs(r.messages()))
	require.True(t, inst.Failed())
	require.Equal(t, 0, inst.Buffered())
	inst.Received(f, []byte("ef"), true)
	inst.Send([]byte("late"))
	inst.FailConnection(errors.New("second"))
	inst.MakeConnectionReady()
	require.Equal(t, []error{boom}, r.fails)
	require.Equal(t, 0, r.afterFail)
	require.Equal(t, 0, r.ready)
	require.Len(t, r.deliveries, 2)
}

func TestInstanceFailConnectionNilError(t *testing.T) {
	r, inst := newRecorded(0)
	inst.FailConnection(nil)
	require.ErrorIs(t, r.err(), ErrDeframingFailed)
}

func TestInstanceMaxBuffered(t *testing.T) {
	r, inst := newRecorded(8)
	hoard := &funcFramer{} // never consumes
	inst.Received(hoard, []byte("12345678"), false)
	require.NoError(t, r.err())
	inst.Received(hoard, []byte("9"), false)
	var tl *TooLargeError
	require.ErrorAs(t, r.err(), &tl)
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)
	require.Equal(t, uint64(9), tl.Size)
	require.Equal(t, uint64(8), tl.Max)
	require.Equal(t, 0, inst.Buffered())
}

func TestInstanceDefaultMaxBuffered(t *testing.T) {
	r, inst := newRecorded(-1)
	_, ok := inst.Parse(DefaultMaxBuffered, -1)
	require.False(t, ok)
	require.NoError(t, r.err())
	_, ok = inst.Parse(DefaultMaxBuffered+1, -1)
	require.False(t, ok)
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)
}

func TestInstanceEndOfStream(t *testing.T) {
	calls := 0
	_, inst := newRecorded(0)
	f := &funcFramer{recv: func(i *Instance) { calls++ }}
	inst.Received(f, nil, false)
	require.Equal(t, 0, calls, "no data and no EOS: no event")
	require.False(t, inst.EndOfStream())
	inst.Received(f, nil, true)
	require.True(t, inst.EndOfStream())
	require.Equal(t, 1, calls, "EOS with an empty buffer still reaches the framer")
}

func TestInstanceActions(t *testing.T) {
	r, inst := newRecorded(0)
	inst.MakeConnectionReady()
	inst.MakeConnectionReady()
	require.True(t, inst.IsReady())
	require.Equal(t, 1, r.ready)
	inst.MakeConnectionClosed()
	inst.MakeConnectionClosed()
	require.Equal(t, 1, r.closed)
	p := NewLines()
	inst.PrependFramer(p)
	inst.PrependFramer(nil)
	require.Equal(t, []Framer{p}, r.prepended)
	inst.Send([]byte("x"))
	require.Equal(t, [][]byte{[]byte("x")}, r.sent)

	// Nil hooks are no-ops.
	bare := NewInstance(Hooks{}, 0)
	bare.Send([]byte("x"))
	bare.MakeConnectionReady()
	bare.MakeConnectionClosed()
	bare.PrependFramer(p)
	bare.StartPassthrough()
	bare.Received(&funcFramer{}, []byte("y"), true)
	bare.FailConnection(errors.New("x"))
	require.True(t, bare.Failed())
}

func TestInstantiate(t *testing.T) {
	plain := &funcFramer{}
	require.Same(t, plain, Instantiate(plain))

	for _, f := range []Framer{NewLengthPrefix(), NewLines(), mustFixedHeader(t, 4, 0, 4)} {
		c := Instantiate(f)
		require.NotSame(t, f, c)
		require.IsType(t, f, c)
	}
}

// normalise turns nil data into empty slices so deliveries compare equal.
func normalise(ds []delivery) []delivery {
	out := make([]delivery, len(ds))
	for i, d := range ds {
		if d.data == nil {
			d.data = []byte{}
		}
		out[i] = d
	}
	return out
}

func mustFixedHeader(t testing.TB, headerLen, off, size int, opts ...FixedHeaderOption) *FixedHeader {
	t.Helper()
	f, err := NewFixedHeader(headerLen, off, size, opts...)
	require.NoError(t, err)
	return f
}

// aliasRecorder keeps the delivered slices themselves (not copies), so a
// test can tell where their bytes live.
func aliasRecorder() (*[][]byte, *Instance) {
	var got [][]byte
	return &got, NewInstance(Hooks{Deliver: func(_ Metadata, d []byte, _ bool) { got = append(got, d) }}, 0)
}

func TestReadTargetReadsInPlace(t *testing.T) {
	body := make([]byte, 100<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	wire := lp(string(body))
	f := NewLengthPrefix()
	got, inst := aliasRecorder()

	require.Nil(t, inst.ReadTarget(1), "nothing is wanted before any data")
	inst.Received(f, append([]byte(nil), wire[:1000]...), false)
	var tgts [][]byte
	var offs []int
	for off := 1000; off < len(wire); {
		tgt := inst.ReadTarget(16 << 10)
		require.NotNil(t, tgt, "a target is lent until the message is complete (at %d)", off)
		require.LessOrEqual(t, len(tgt), len(wire)-off, "the target is at most the rest of the announced message")
		n := copy(tgt[:min(len(tgt), 30000)], wire[off:])
		tgts, offs = append(tgts, tgt), append(offs, off)
		inst.Received(f, tgt[:n:n], false)
		off += n
	}
	require.Len(t, *got, 1)
	msg := (*got)[0]
	require.Equal(t, body, msg)
	// the reads into the last room (the buffer grows as bytes arrive) are
	// in the delivered message itself
	last := len(tgts) - 1
	require.Equal(t, len(wire)-offs[last], len(tgts[last]), "the last room ends with the message")
	for i := last; i >= 0 && &tgts[i][len(tgts[i])-1] == &msg[len(msg)-1]; i-- {
		require.Same(t, &tgts[i][0], &msg[offs[i]-LengthPrefixHeaderLen], "read %d was taken in place, not copied", i)
	}
	require.Nil(t, inst.ReadTarget(1), "nothing is wanted after the message")
}

func TestReadTargetNotLentForSmallRest(t *testing.T) {
	f := NewLengthPrefix()
	_, inst := aliasRecorder()
	wire := lp(string(make([]byte, 20<<10)))
	inst.Received(f, append([]byte(nil), wire[:10<<10]...), false)
	require.Nil(t, inst.ReadTarget(16<<10), "10 KiB still wanted: below the minimum")
	require.NotNil(t, inst.ReadTarget(8<<10))
	require.Nil(t, (&Instance{}).ReadTarget(0), "an empty Instance lends nothing")
}

func TestReadTargetUnusedStaysUntouched(t *testing.T) {
	f := NewLengthPrefix()
	got, inst := aliasRecorder()
	wire := cat(lp(string(make([]byte, 64<<10))), lp("next"))
	inst.Received(f, append([]byte(nil), wire[:100]...), false)
	tgt := inst.ReadTarget(1)
	require.NotNil(t, tgt)
	for i := range tgt {
		tgt[i] = 0xEE
	}
	// the rest arrives from elsewhere (a read that did not use the target)
	inst.Received(f, append([]byte(nil), wire[100:]...), false)
	require.Len(t, *got, 2)
	require.Equal(t, wire[4:4+64<<10], (*got)[0])
	require.Equal(t, []byte("next"), (*got)[1])
	for i := range tgt {
		require.Equal(t, byte(0xEE), tgt[i], "byte %d of the lent target was written", i)
	}
}

func TestReceivedCopiesOnlyTheWantedRest(t *testing.T) {
	f := NewLengthPrefix()
	got, inst := aliasRecorder()
	first, second, third := string(make([]byte, 3000)), "second message", "third"
	wire := cat(lp(first), lp(second), lp(third))
	inst.Received(f, append([]byte(nil), wire[:1000]...), false)
	// one read with the rest of the first message, the whole second one
	// and part of the third
	chunk := append([]byte(nil), wire[1000:len(wire)-2]...)
	inst.Received(f, chunk, false)
	require.Len(t, *got, 2)
	require.Equal(t, []byte(first), (*got)[0])
	require.Equal(t, []byte(second), (*got)[1])
	k := len(lp(first)) - 1000 + 4
	require.Same(t, &chunk[k], &(*got)[1][0], "the message behind the completed one is delivered in place")
	inst.Received(f, append([]byte(nil), wire[len(wire)-2:]...), true)
	require.Len(t, *got, 3)
	require.Equal(t, []byte(third), (*got)[2])
}

func TestDeliverOwnedHandsOffTheReadTarget(t *testing.T) {
	f := NewLengthPrefix()
	type owned struct{ data, backing []byte }
	var got []owned
	var allocs [][]byte
	inst := NewInstance(Hooks{
		Alloc: func(n int) []byte { b := make([]byte, n); allocs = append(allocs, b); return b },
		DeliverOwned: func(_ Metadata, data, backing []byte, eom bool) {
			require.True(t, eom)
			got = append(got, owned{data, backing})
		},
	}, 0)
	body := bytes.Repeat([]byte("x"), 40<<10)
	wire := cat(lp(string(body)), lp("small"), lp(string(body)))
	inst.Received(f, append([]byte(nil), wire[:100]...), false)
	tgt := inst.ReadTarget(16 << 10)
	require.NotNil(t, tgt)
	n := copy(tgt, wire[100:])
	inst.Received(f, tgt[:n:n], false)
	require.Len(t, got, 1)
	require.Equal(t, body, got[0].data)
	require.Len(t, allocs, 1)
	require.NotNil(t, got[0].backing, "the message ends the buffer from Alloc: it is handed off")
	require.Same(t, &allocs[0][0], &got[0].backing[0])
	require.Same(t, &got[0].backing[len(got[0].backing)-1], &got[0].data[len(got[0].data)-1])

	// the small message is cut from a read buffer: nothing to hand off
	rest := append([]byte(nil), wire[len(lp(string(body))):]...)
	k := len(lp("small")) + 100
	inst.Received(f, rest[:k:k], false)
	require.Len(t, got, 2)
	require.Equal(t, []byte("small"), got[1].data)
	require.Nil(t, got[1].backing)

	// the handed-off buffer is the receiver's: scribbling over it does not
	// change what the Instance delivers next, and it is never lent again
	for i := range got[0].backing {
		got[0].backing[i] = 0xDD
	}
	tgt = inst.ReadTarget(16 << 10)
	require.NotNil(t, tgt)
	require.NotSame(t, &allocs[0][len(allocs[0])-1], &tgt[len(tgt)-1])
	n = copy(tgt, rest[k:])
	inst.Received(f, tgt[:n:n], true)
	require.Len(t, got, 3)
	require.Equal(t, body, got[2].data)
	require.NotNil(t, got[2].backing)
}

// Metadata.Size counts the bytes of []byte and string values, which a
// receiver holds beside the message's data, and nothing else.
func TestMetadataSize(t *testing.T) {
	for _, tc := range []struct {
		m    Metadata
		want int
	}{
		{nil, 0},
		{Metadata{}, 0},
		{Metadata{HeaderMetadataKey: make([]byte, 4096)}, 4096},
		{Metadata{"a": "xyz", "b": []byte{1, 2}, "c": 7, "d": nil}, 5},
	} {
		if got := tc.m.Size(); got != tc.want {
			t.Errorf("%v: Size %d, want %d", tc.m, got, tc.want)
		}
	}
}

// A delivered piece's DeliveryOverhead is its metadata's size and the
// bytes the framer skipped since the piece before it (a FixedHeader's
// header, both copied into the metadata and skipped; a separator), and
// Allow counts it.
func TestDeliveryOverhead(t *testing.T) {
	fh, err := NewFixedHeader(100, 0, 4)
	require.NoError(t, err)
	var inst *Instance
	var overheads []int
	record := Hooks{Deliver: func(Metadata, []byte, bool) { overheads = append(overheads, inst.DeliveryOverhead()) }}
	inst = NewInstance(record, 0)
	fh.Start(inst)
	// each message costs 1 + 2 + 200: the second one spends the
	// allowance, and the third is held
	inst.Allow(250, 1)
	var wire []byte
	for range 3 {
		hdr := make([]byte, 100)
		hdr[3] = 2
		wire = append(append(wire, hdr...), 'h', 'i')
	}
	inst.Received(fh, wire, false)
	require.Equal(t, []int{200, 200}, overheads)
	require.True(t, inst.Holding())

	overheads = nil
	inst = NewInstance(record, 0)
	inst.Received(NewLines(), []byte("a\nb\n"), false)
	require.Equal(t, []int{0, 1}, overheads, "a separator is charged to the next line")
}
