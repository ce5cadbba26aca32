package framers

// Tests of the defaults and concurrency claims of the package's doc
// comments, against the literal values the comments state.

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDocFramerDefaults(t *testing.T) {
	// the constants hold what their comments say
	require.Equal(t, 16<<20, DefaultMaxMessageSize, "16 MiB")
	require.Equal(t, 1<<20, DefaultDelimiterMaxMessageSize, "1 MiB")
	require.Equal(t, 16<<20+64, DefaultMaxBuffered, "16 MiB plus room for a header")
	require.Equal(t, 4, LengthPrefixHeaderLen)
	require.Equal(t, 64<<10, MaxFixedHeaderLen, "64 KiB")
	require.Equal(t, "header", HeaderMetadataKey)

	fh4 := func(opts ...FixedHeaderOption) *FixedHeader { return mustFixedHeader(t, 4, 0, 4, opts...) }
	for i, tt := range []struct {
		name      string
		max, buf  int // MaxMessageSize, MaxBuffered
		wantMax   int
		wantBufed int
	}{
		{"LengthPrefix", NewLengthPrefix().MaxMessageSize(), NewLengthPrefix().MaxBuffered(), 16 << 20, 16<<20 + 4},
		{"LengthPrefix 0", NewLengthPrefix(WithMaxMessageSize(0)).MaxMessageSize(), 0, 16 << 20, 0},
		{"LengthPrefix -1", NewLengthPrefix(WithMaxMessageSize(-1)).MaxMessageSize(), 0, 16 << 20, 0},
		{"Delimiter", NewDelimiter(nil).MaxMessageSize(), NewDelimiter(nil).MaxBuffered(), 1 << 20, 1<<20 + 1},
		{"Delimiter sep", NewDelimiter([]byte("\r\n")).MaxMessageSize(), NewDelimiter([]byte("\r\n")).MaxBuffered(), 1 << 20, 1<<20 + 2},
		{"Lines -1", NewLines(WithMaxMessageSize(-1)).MaxMessageSize(), 0, 1 << 20, 0},
		{"FixedHeader", fh4().MaxMessageSize(), fh4().MaxBuffered(), 16 << 20, 16<<20 + 4},
		{"FixedHeader -1", fh4(WithMaxMessageSize(-1)).MaxMessageSize(), 0, 16 << 20, 0},
		{"FixedHeader 1-byte field", mustFixedHeader(t, 3, 1, 1).MaxMessageSize(), mustFixedHeader(t, 3, 1, 1).MaxBuffered(), 255, 258},
		{"FixedHeader 2-byte field", mustFixedHeader(t, 2, 0, 2).MaxMessageSize(), 0, 65535, 0},
	} {
		if tt.max != tt.wantMax {
			t.Errorf("#%d %s: MaxMessageSize %d; want %d", i, tt.name, tt.max, tt.wantMax)
		}
		if tt.buf != tt.wantBufed {
			t.Errorf("#%d %s: MaxBuffered %d; want %d", i, tt.name, tt.buf, tt.wantBufed)
		}
	}

	// NewFixedHeader takes headers up to MaxFixedHeaderLen
	_, err := NewFixedHeader(MaxFixedHeaderLen, 0, 4)
	require.NoError(t, err)
	_, err = NewFixedHeader(MaxFixedHeaderLen+1, 0, 4)
	require.Error(t, err)

	// WithLengthIncludesHeader: "The default is false: it counts the body
	// only."
	for _, tt := range []struct {
		f    *FixedHeader
		want byte
	}{
		{mustFixedHeader(t, 2, 1, 1), 5},
		{mustFixedHeader(t, 2, 1, 1, WithLengthIncludesHeader(false)), 5},
		{mustFixedHeader(t, 2, 1, 1, WithLengthIncludesHeader(true)), 7},
	} {
		r, inst := newRecorded(0)
		tt.f.NewSentMessage(inst, []byte("hello"), nil, true)
		require.Equal(t, append([]byte{0, tt.want}, "hello"...), r.wire())
	}

	// NewInstance: maxBuffered 0 (and below) means DefaultMaxBuffered
	for _, n := range []int{0, -5} {
		r, inst := newRecorded(n)
		_, ok := inst.Parse(DefaultMaxBuffered, -1)
		require.False(t, ok)
		require.NoError(t, r.err(), "maxBuffered %d: up to DefaultMaxBuffered may be asked for", n)
		_, _ = inst.Parse(DefaultMaxBuffered+1, -1)
		require.ErrorIs(t, r.err(), ErrMessageTooLarge, "maxBuffered %d: beyond it fails", n)
	}
}

// MessageChecker: CheckMessage "must not change the framer's state, so it
// is safe to call from any goroutine as long as the framer's configuration
// is not being changed (the built-in framers are immutable after
// construction)". Several goroutines call CheckMessage on one framer value
// while others frame with clones of it (Instantiate, as gotaps does per
// connection) and with the value itself: no race, and every answer is
// right.
func TestDocCheckMessageIsSafeConcurrently(t *testing.T) {
	fixed := mustFixedHeader(t, 2, 1, 1, WithMaxMessageSize(100))
	for _, f := range []interface {
		Framer
		MessageChecker
	}{NewLengthPrefix(WithMaxMessageSize(100)), NewLines(WithMaxMessageSize(100)), fixed} {
		t.Run(fmt.Sprintf("%T", f), func(t *testing.T) {
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 300 {
						small, big := make([]byte, i%100), make([]byte, 101+i)
						if err := f.CheckMessage(small); err != nil {
							t.Errorf("CheckMessage(%d bytes) = %v", len(small), err)
							return
						}
						var tl *TooLargeError
						if err := f.CheckMessage(big); !errors.As(err, &tl) {
							t.Errorf("CheckMessage(%d bytes) = %v; want a *TooLargeError", len(big), err)
							return
						}
						if g%2 == 0 { // one connection's framer, in its own goroutine
							c := Instantiate(f)
							r, inst := newRecorded(0)
							c.Start(inst)
							c.NewSentMessage(inst, small, nil, true)
							if len(r.fails) > 0 || len(r.sent) == 0 {
								t.Errorf("a clone failed to frame %d bytes: %v", len(small), r.fails)
								return
							}
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// Hooks: "A nil hook is a no-op." An Instance with no hooks at all runs
// every action of a built-in framer without a panic.
func TestDocNilHooksAreNoOps(t *testing.T) {
	for _, f := range []Framer{NewLengthPrefix(WithMaxMessageSize(8)), NewLines(WithMaxMessageSize(8)), mustFixedHeader(t, 2, 1, 1)} {
		inst := NewInstance(Hooks{}, 0)
		f.Start(inst)
		require.True(t, inst.IsReady())
		f.NewSentMessage(inst, []byte("ab"), nil, false)
		f.NewSentMessage(inst, []byte("cd"), nil, true)
		inst.Received(f, []byte{0, 0, 0, 2, 'h', 'i', '\n', 0, 2}, false)
		inst.Received(f, make([]byte, 64), true) // too large, or truncated: a Fail
		f.NewSentMessage(inst, make([]byte, 300), nil, true)
		inst.StartPassthrough()
		inst.PrependFramer(NewLines())
		inst.MakeConnectionClosed()
		f.Stop(inst)
		require.True(t, inst.Failed(), "%T: the oversized or cut message failed the Instance", f)
	}
}
