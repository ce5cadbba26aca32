package framers

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDelimiterReceive(t *testing.T) {
	crlf := []byte("\r\n")
	tests := []struct {
		name     string
		sep      []byte
		opts     []DelimiterOption
		chunks   [][]byte
		eos      bool
		want     []string
		wantErr  error
		buffered int
	}{
		{name: "two lines in one read", chunks: [][]byte{[]byte("hello\nworld\n")}, want: []string{"hello", "world"}},
		{name: "byte by byte", chunks: bytewise([]byte("hello\nworld\n")), want: []string{"hello", "world"}},
		{name: "empty lines", chunks: [][]byte{[]byte("\n\na\n")}, want: []string{"", "", "a"}},
		{name: "incomplete line waits", chunks: [][]byte{[]byte("a\nbc")}, want: []string{"a"}, buffered: 2},
		{name: "last line without newline at EOS", chunks: [][]byte{[]byte("a\nlast")}, eos: true, want: []string{"a", "last"}},
		{name: "EOS alone", eos: true},
		{name: "EOS after a full line", chunks: [][]byte{[]byte("a\n")}, eos: true, want: []string{"a"}},
		{name: "CRLF split across reads", sep: crlf, chunks: [][]byte{[]byte("ab\r"), []byte("\ncd\r"), []byte("\n")}, want: []string{"ab", "cd"}},
		{name: "CRLF byte by byte", sep: crlf, chunks: bytewise([]byte("a\rb\r\n\r\n")), want: []string{"a\rb", ""}},
		{name: "CRLF lone CR kept at EOS", sep: crlf, chunks: [][]byte{[]byte("ab\r")}, eos: true, want: []string{"ab\r"}},
		{name: "multi-byte separator overlap", sep: []byte("aab"), chunks: bytewise([]byte("xaaab")), want: []string{"xa"}},
		{name: "exactly max", opts: []DelimiterOption{WithMaxMessageSize(4)}, chunks: [][]byte{[]byte("abcd\n")}, want: []string{"abcd"}},
		{name: "exactly max byte by byte", opts: []DelimiterOption{WithMaxMessageSize(4)}, chunks: bytewise([]byte("abcd\n")), want: []string{"abcd"}},
		{name: "max without separator yet", opts: []DelimiterOption{WithMaxMessageSize(4)}, chunks: [][]byte{[]byte("abcd")}, buffered: 4},
		{name: "above max, no separator", opts: []DelimiterOption{WithMaxMessageSize(4)}, chunks: bytewise([]byte("abcde")), wantErr: ErrMessageTooLarge},
		{name: "above max, separator later in the read", opts: []DelimiterOption{WithMaxMessageSize(4)}, chunks: [][]byte{[]byte("ok\nabcde\n")}, want: []string{"ok"}, wantErr: ErrMessageTooLarge},
		{name: "CRLF exactly max", sep: crlf, opts: []DelimiterOption{WithMaxMessageSize(2)}, chunks: bytewise([]byte("ab\r\n")), want: []string{"ab"}},
		{name: "CRLF above max", sep: crlf, opts: []DelimiterOption{WithMaxMessageSize(2)}, chunks: bytewise([]byte("abc\r\n")), wantErr: ErrMessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sep := tt.sep
			if sep == nil {
				sep = []byte("\n")
			}
			f := NewDelimiter(sep, tt.opts...)
			r, inst := newRecorded(0)
			feed(f, inst, tt.chunks, tt.eos)
			require.Equal(t, tt.want, nilIfEmpty(strs(r.messages())))
			for _, d := range r.deliveries {
				require.True(t, d.eom)
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

func TestDelimiterSearchesOnlyNewBytes(t *testing.T) {
	f := NewLines()
	r, inst := newRecorded(0)
	line := bytes.Repeat([]byte("x"), 64<<10)
	for _, c := range chunk(line, 1<<10) {
		inst.Received(f, bytes.Clone(c), false)
		require.Equal(t, inst.Buffered(), f.searched, "search position follows the buffer")
	}
	inst.Received(f, []byte("\nnext"), false)
	require.Equal(t, []string{string(line)}, strs(r.messages()))
	require.Equal(t, 4, f.searched)
}

func TestDelimiterBufferBounded(t *testing.T) {
	f := NewLines(WithMaxMessageSize(100))
	r, inst := newRecorded(0)
	for i := 0; i < 1000 && !inst.Failed(); i++ {
		inst.Received(f, []byte("abcdefg"), false)
		require.LessOrEqual(t, inst.Buffered(), 100+1)
	}
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)
}

func TestDelimiterSend(t *testing.T) {
	f := NewDelimiter([]byte("\r\n"))
	r, inst := newRecorded(0)
	payload := []byte("GET /")
	f.NewSentMessage(inst, payload, nil, true)
	require.Len(t, r.sent, 2)
	require.Same(t, &payload[0], &r.sent[0][0], "payload is passed down, not copied")
	r.sent[1][0] = 'X' // the lower layer owns what it gets
	f.NewSentMessage(inst, nil, nil, true)
	require.Len(t, r.sent, 3, "an empty message is the separator alone")
	require.Equal(t, "\r\n", string(r.sent[2]))

	// Partial sends pass parts straight down.
	r2, inst2 := newRecorded(0)
	f.NewSentMessage(inst2, []byte("a"), nil, false)
	f.NewSentMessage(inst2, nil, nil, false)
	f.NewSentMessage(inst2, []byte("b"), nil, false)
	require.Equal(t, "ab", string(r2.wire()))
	f.NewSentMessage(inst2, []byte("c"), nil, true)
	require.Equal(t, "abc\r\n", string(r2.wire()))
}

func TestDelimiterCheckMessage(t *testing.T) {
	f := NewDelimiter([]byte("\r\n"), WithMaxMessageSize(8))
	require.NoError(t, f.CheckMessage(nil))
	require.NoError(t, f.CheckMessage([]byte("a\rb\nc")))
	require.ErrorIs(t, f.CheckMessage([]byte("a\r\nb")), ErrDeframingFailed)
	require.ErrorIs(t, f.CheckMessage([]byte("123456789")), ErrMessageTooLarge)

	// "ab" + "aba" reads back as "" then "ba...": refused.
	aba := NewDelimiter([]byte("aba"))
	require.ErrorIs(t, aba.CheckMessage([]byte("ab")), ErrDeframingFailed)
	require.ErrorIs(t, aba.CheckMessage([]byte("xxab")), ErrDeframingFailed)
	require.NoError(t, aba.CheckMessage([]byte("ba")))
	require.NoError(t, aba.CheckMessage([]byte("b")))
	require.NoError(t, aba.CheckMessage([]byte("aa")))
}

func TestDelimiterConstructor(t *testing.T) {
	sep := []byte("||")
	f := NewDelimiter(sep)
	sep[0] = 'X'
	require.Equal(t, []byte("||"), f.Separator(), "the separator is copied")
	require.Equal(t, DefaultDelimiterMaxMessageSize, f.MaxMessageSize())
	require.Equal(t, []byte("\n"), NewDelimiter(nil).Separator())
	require.Equal(t, []byte("\n"), NewLines().Separator())
	require.Equal(t, 7, NewLines(WithMaxMessageSize(7), nil).MaxMessageSize())
	require.Equal(t, math.MaxInt-1, NewLines(WithMaxMessageSize(math.MaxInt)).MaxMessageSize())

	// Empty separator: lines, never an endless run of empty messages.
	r, inst := newRecorded(0)
	feed(NewDelimiter([]byte{}), inst, [][]byte{[]byte("a\nb")}, true)
	require.Equal(t, []string{"a", "b"}, strs(r.messages()))
}

func TestDelimiterLifecycleAndClone(t *testing.T) {
	f := NewLines(WithMaxMessageSize(50))
	r, inst := newRecorded(0)
	f.Start(inst)
	f.Stop(inst)
	require.Equal(t, 1, r.ready)
	require.Equal(t, 1, r.closed)

	inst.Received(f, []byte(strings.Repeat("x", 30)), false)
	require.Equal(t, 30, f.searched)
	c, ok := f.Clone().(*Delimiter)
	require.True(t, ok)
	require.Equal(t, 0, c.searched, "a clone starts a fresh search")
	require.Equal(t, 50, c.MaxMessageSize())
	require.Equal(t, f.Separator(), c.Separator())
}
