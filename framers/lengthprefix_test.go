package framers

import (
	"bytes"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLengthPrefixReceive(t *testing.T) {
	two := cat(lp("hello"), lp("world!"))
	tests := []struct {
		name    string
		opts    []LengthPrefixOption
		chunks  [][]byte
		eos     bool
		want    []string
		wantErr error
		// buffered bounds Buffered() after the chunks.
		buffered int
	}{
		{name: "two messages in one read", chunks: [][]byte{two}, want: []string{"hello", "world!"}},
		{name: "byte by byte", chunks: bytewise(two), want: []string{"hello", "world!"}},
		{name: "header split across reads", chunks: [][]byte{{0, 0}, {0, 3, 'a'}, {'b', 'c'}}, want: []string{"abc"}},
		{name: "three-byte chunks", chunks: chunk(cat(lp("a"), lp(""), lp("bcdefgh"), lp("i")), 3), want: []string{"a", "", "bcdefgh", "i"}},
		{name: "zero-length message", chunks: [][]byte{lp("")}, want: []string{""}},
		{name: "zero-length messages in a row", chunks: [][]byte{cat(lp(""), lp(""), lp("x"))}, want: []string{"", "", "x"}},
		{name: "partial body waits", chunks: [][]byte{cat(lp("done"), lp("pending")[:7])}, want: []string{"done"}, buffered: 7},
		{name: "clean end of stream", chunks: [][]byte{lp("x")}, eos: true, want: []string{"x"}},
		{name: "end of stream alone", chunks: nil, eos: true},
		{name: "truncated header at EOS", chunks: [][]byte{cat(lp("x"), []byte{0, 0})}, eos: true, want: []string{"x"}, wantErr: ErrTruncated},
		{name: "truncated body at EOS", chunks: [][]byte{lp("hello")[:7]}, eos: true, wantErr: ErrTruncated},
		{name: "announced 4 GiB", chunks: [][]byte{{0xff, 0xff, 0xff, 0xff, 'a'}}, wantErr: ErrMessageTooLarge},
		{name: "above max, no body yet", opts: []LengthPrefixOption{WithMaxMessageSize(4)}, chunks: [][]byte{{0, 0, 0, 5}}, wantErr: ErrMessageTooLarge},
		{name: "exactly max", opts: []LengthPrefixOption{WithMaxMessageSize(4)}, chunks: [][]byte{lp("abcd")}, want: []string{"abcd"}},
		{name: "good message before a bad one", opts: []LengthPrefixOption{WithMaxMessageSize(4)}, chunks: [][]byte{cat(lp("ok"), lp("toolong"))}, want: []string{"ok"}, wantErr: ErrMessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewLengthPrefix(tt.opts...)
			r, inst := newRecorded(0)
			feed(f, inst, tt.chunks, tt.eos)
			require.Equal(t, tt.want, nilIfEmpty(strs(r.messages())))
			for _, d := range r.deliveries {
				require.True(t, d.eom, "no partial deliveries")
			}
			if tt.wantErr != nil {
				require.ErrorIs(t, r.err(), tt.wantErr)
				require.Len(t, r.fails, 1)
			} else {
				require.NoError(t, r.err())
			}
			require.Equal(t, tt.buffered, inst.Buffered())
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestLengthPrefixHugeAnnouncementAllocatesNothing(t *testing.T) {
	f := NewLengthPrefix()
	var r *recorder
	var inst *Instance
	n := allocated(func() {
		r, inst = newRecorded(0)
		inst.Received(f, []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, false)
	})
	require.Less(t, n, uint64(64<<10), "bytes allocated")
	var tl *TooLargeError
	require.ErrorAs(t, r.err(), &tl)
	require.Equal(t, uint64(math.MaxUint32), tl.Size)
	require.Equal(t, uint64(DefaultMaxMessageSize), tl.Max)
	require.Equal(t, 0, inst.Buffered())
	require.Empty(t, r.deliveries)

	allocs := testing.AllocsPerRun(50, func() {
		inst := NewInstance(Hooks{}, 0)
		inst.Received(f, []byte{0xff, 0xff, 0xff, 0xff}, false)
	})
	require.LessOrEqual(t, allocs, 4.0)
}

func TestLengthPrefixBufferStaysSmall(t *testing.T) {
	// A peer trickling a large (allowed) body: only what arrived is held.
	f := NewLengthPrefix()
	r, inst := newRecorded(0)
	inst.Received(f, []byte{0, 0x10, 0, 0}, false) // 1 MiB announced
	for range 10 {
		inst.Received(f, make([]byte, 100), false)
	}
	require.NoError(t, r.err())
	require.Equal(t, 4+1000, inst.Buffered())
	require.Empty(t, r.deliveries)
}

func TestLengthPrefixSend(t *testing.T) {
	f := NewLengthPrefix()
	r, inst := newRecorded(0)
	payload := []byte("payload")
	f.NewSentMessage(inst, payload, nil, true)
	require.Len(t, r.sent, 2)
	require.Equal(t, []byte{0, 0, 0, 7}, r.sent[0])
	require.Same(t, &payload[0], &r.sent[1][0], "payload is passed down, not copied")

	f.NewSentMessage(inst, nil, nil, true)
	require.Len(t, r.sent, 3, "a zero-length message is a header alone")
	require.Equal(t, cat(lp("payload"), lp("")), r.wire())
	require.NoError(t, r.err())
}

func TestLengthPrefixPartialSend(t *testing.T) {
	f := NewLengthPrefix(WithMaxMessageSize(8))
	r, inst := newRecorded(0)
	part := []byte("ab")
	f.NewSentMessage(inst, part, nil, false)
	part[0] = 'X' // the framer keeps its own copy of parts
	f.NewSentMessage(inst, nil, nil, false)
	f.NewSentMessage(inst, []byte("cd"), nil, false)
	require.Empty(t, r.sent, "nothing goes down before the end")
	f.NewSentMessage(inst, []byte("ef"), nil, true)
	require.Len(t, r.sent, 2)
	require.Equal(t, lp("abcdef"), r.wire())

	// Parts that end with an empty last part; then a whole message.
	f.NewSentMessage(inst, []byte("gh"), nil, false)
	f.NewSentMessage(inst, nil, nil, true)
	f.NewSentMessage(inst, []byte("i"), nil, true)
	require.Equal(t, cat(lp("abcdef"), lp("gh"), lp("i")), r.wire())

	// The receive side sees the same messages.
	r2, inst2 := newRecorded(0)
	feed(f, inst2, bytewise(r.wire()), true)
	require.Equal(t, []string{"abcdef", "gh", "i"}, strs(r2.messages()))
	require.NoError(t, r.err())
}

func TestLengthPrefixSendTooLarge(t *testing.T) {
	t.Run("whole", func(t *testing.T) {
		f := NewLengthPrefix(WithMaxMessageSize(3))
		r, inst := newRecorded(0)
		f.NewSentMessage(inst, []byte("abcd"), nil, true)
		require.ErrorIs(t, r.err(), ErrMessageTooLarge)
		require.Empty(t, r.sent)
	})
	t.Run("partial", func(t *testing.T) {
		f := NewLengthPrefix(WithMaxMessageSize(3))
		r, inst := newRecorded(0)
		f.NewSentMessage(inst, []byte("ab"), nil, false)
		f.NewSentMessage(inst, []byte("cd"), nil, false)
		require.ErrorIs(t, r.err(), ErrMessageTooLarge)
		require.Empty(t, r.sent)
	})
	t.Run("last part", func(t *testing.T) {
		f := NewLengthPrefix(WithMaxMessageSize(3))
		r, inst := newRecorded(0)
		f.NewSentMessage(inst, []byte("ab"), nil, false)
		f.NewSentMessage(inst, []byte("cd"), nil, true)
		require.ErrorIs(t, r.err(), ErrMessageTooLarge)
		require.Empty(t, r.sent)
	})
}

func TestLengthPrefixLifecycleAndOptions(t *testing.T) {
	f := NewLengthPrefix()
	require.Equal(t, DefaultMaxMessageSize, f.MaxMessageSize())
	require.Equal(t, 100, NewLengthPrefix(WithMaxMessageSize(100)).MaxMessageSize())
	require.Equal(t, DefaultMaxMessageSize, NewLengthPrefix(WithMaxMessageSize(0), nil).MaxMessageSize())
	if math.MaxInt > math.MaxUint32 {
		require.Equal(t, math.MaxUint32, NewLengthPrefix(WithMaxMessageSize(math.MaxInt)).MaxMessageSize())
	}

	r, inst := newRecorded(0)
	f.Start(inst)
	require.True(t, inst.IsReady())
	require.Equal(t, 1, r.ready)
	f.Stop(inst)
	require.Equal(t, 1, r.closed)
	require.Empty(t, r.sent)
}

func TestLengthPrefixClone(t *testing.T) {
	f := NewLengthPrefix(WithMaxMessageSize(10))
	_, inst := newRecorded(0)
	f.NewSentMessage(inst, []byte("half"), nil, false)

	c, ok := f.Clone().(*LengthPrefix)
	require.True(t, ok)
	require.Equal(t, 10, c.MaxMessageSize())
	r2, inst2 := newRecorded(0)
	c.NewSentMessage(inst2, []byte("x"), nil, true)
	require.Equal(t, lp("x"), r2.wire(), "a clone does not inherit a partial message")
}

func TestLengthPrefixCheckMessage(t *testing.T) {
	f := NewLengthPrefix(WithMaxMessageSize(3))
	require.NoError(t, f.CheckMessage(nil))
	require.NoError(t, f.CheckMessage([]byte("abc")))
	require.ErrorIs(t, f.CheckMessage([]byte("abcd")), ErrMessageTooLarge)
	var mc MessageChecker = f
	require.Error(t, mc.CheckMessage(bytes.Repeat([]byte{0}, 4)))
}
