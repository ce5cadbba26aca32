package framers

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// fh builds a message for a header of 8 bytes: "TY" type, 2-byte length at
// offset 2, then 4 bytes of flags.
func fh(typ string, flags string, body string) []byte {
	h := make([]byte, 8)
	copy(h, typ)
	binary.BigEndian.PutUint16(h[2:], uint16(len(body)))
	copy(h[4:], flags)
	return append(h, body...)
}

func TestNewFixedHeaderErrors(t *testing.T) {
	tests := []struct {
		name              string
		headerLen, off, n int
		opts              []FixedHeaderOption
		ok                bool
	}{
		{"length prefix", 4, 0, 4, nil, true},
		{"one byte", 1, 0, 1, nil, true},
		{"field at the end", 10, 2, 8, nil, true},
		{"size 3", 4, 0, 3, nil, false},
		{"size 0", 4, 0, 0, nil, false},
		{"size 16", 16, 0, 16, nil, false},
		{"field past the header", 4, 1, 4, nil, false},
		{"negative offset", 4, -1, 2, nil, false},
		{"header 0", 0, 0, 1, nil, false},
		{"header too long", MaxFixedHeaderLen + 1, 0, 4, nil, false},
		{"longest header", MaxFixedHeaderLen, 0, 4, nil, true},
		{"includes header that fits", 255, 0, 1, []FixedHeaderOption{WithLengthIncludesHeader(true)}, true},
		{"includes header too large for field", 256, 0, 1, []FixedHeaderOption{WithLengthIncludesHeader(true)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFixedHeader(tt.headerLen, tt.off, tt.n, tt.opts...)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, tt.headerLen, f.HeaderLen())
			} else {
				require.Error(t, err)
				require.Nil(t, f)
			}
		})
	}
}

func TestFixedHeaderMaxClamp(t *testing.T) {
	require.Equal(t, DefaultMaxMessageSize, mustFixedHeader(t, 4, 0, 4).MaxMessageSize())
	require.Equal(t, 255, mustFixedHeader(t, 2, 0, 1).MaxMessageSize())
	require.Equal(t, 253, mustFixedHeader(t, 2, 0, 1, WithLengthIncludesHeader(true)).MaxMessageSize())
	require.Equal(t, 0, mustFixedHeader(t, 255, 0, 1, WithLengthIncludesHeader(true)).MaxMessageSize())
	require.Equal(t, 9, mustFixedHeader(t, 2, 0, 2, WithMaxMessageSize(9), nil).MaxMessageSize())
	require.Equal(t, math.MaxInt-8, mustFixedHeader(t, 8, 0, 8, WithMaxMessageSize(math.MaxInt)).MaxMessageSize())
}

func TestFixedHeaderReceive(t *testing.T) {
	two := cat(fh("AB", "1234", "hello"), fh("CD", "5678", ""))
	huge8 := []byte{'Z', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name      string
		f         func(t *testing.T) *FixedHeader
		chunks    [][]byte
		eos       bool
		want      []string
		wantHdr   []string
		wantErr   error
		buffered  int
		noHdrMeta bool
	}{
		{name: "two messages in one read", chunks: [][]byte{two}, want: []string{"hello", ""}, wantHdr: []string{"AB\x00\x001234", "CD\x00\x005678"}},
		{name: "byte by byte", chunks: bytewise(two), want: []string{"hello", ""}, wantHdr: []string{"AB\x00\x001234", "CD\x00\x005678"}},
		{name: "header split across reads", chunks: chunk(fh("AB", "", "xyz"), 5), want: []string{"xyz"}, wantHdr: []string{"AB\x00\x00\x00\x00\x00\x00"}},
		{name: "partial body waits", chunks: [][]byte{fh("AB", "", "xyz")[:10]}, buffered: 10},
		{name: "truncated header at EOS", chunks: [][]byte{two[:3]}, eos: true, wantErr: ErrTruncated},
		{name: "truncated body at EOS", chunks: [][]byte{two[:10]}, eos: true, wantErr: ErrTruncated},
		{name: "clean EOS", chunks: [][]byte{two}, eos: true, want: []string{"hello", ""}, wantHdr: []string{"AB\x00\x001234", "CD\x00\x005678"}},
		{
			name:    "above max",
			f:       func(t *testing.T) *FixedHeader { return mustFixedHeader(t, 8, 2, 2, WithMaxMessageSize(4)) },
			chunks:  [][]byte{fh("AB", "", "12345")[:8]},
			wantErr: ErrMessageTooLarge,
		},
		{
			name:    "announced 2^64-1",
			f:       func(t *testing.T) *FixedHeader { return mustFixedHeader(t, 9, 1, 8) },
			chunks:  [][]byte{huge8},
			wantErr: ErrMessageTooLarge,
		},
		{
			name:      "length field alone gives no metadata",
			f:         func(t *testing.T) *FixedHeader { return mustFixedHeader(t, 2, 0, 2) },
			chunks:    [][]byte{{0, 2, 'h', 'i', 0, 0}},
			want:      []string{"hi", ""},
			noHdrMeta: true,
		},
		{
			name:    "length includes header",
			f:       func(t *testing.T) *FixedHeader { return mustFixedHeader(t, 3, 0, 1, WithLengthIncludesHeader(true)) },
			chunks:  [][]byte{{5, 'x', 'y', 'h', 'i', 3, 'p', 'q'}},
			want:    []string{"hi", ""},
			wantHdr: []string{"\x00xy", "\x00pq"},
		},
		{
			name:    "length below the header",
			f:       func(t *testing.T) *FixedHeader { return mustFixedHeader(t, 3, 0, 1, WithLengthIncludesHeader(true)) },
			chunks:  [][]byte{{2, 'x', 'y'}},
			wantErr: ErrDeframingFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *FixedHeader
			if tt.f != nil {
				f = tt.f(t)
			} else {
				f = mustFixedHeader(t, 8, 2, 2)
			}
			r, inst := newRecorded(0)
			feed(f, inst, tt.chunks, tt.eos)
			require.Equal(t, tt.want, nilIfEmpty(strs(r.messages())))
			var hdrs []string
			for _, d := range r.deliveries {
				require.True(t, d.eom)
				if tt.noHdrMeta {
					require.Nil(t, d.meta)
					continue
				}
				h, ok := d.meta[HeaderMetadataKey].([]byte)
				require.True(t, ok)
				hdrs = append(hdrs, string(h))
			}
			require.Equal(t, tt.wantHdr, hdrs)
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

func TestFixedHeaderHugeAnnouncementAllocatesNothing(t *testing.T) {
	f := mustFixedHeader(t, 4, 0, 4)
	var r *recorder
	n := allocated(func() {
		var inst *Instance
		r, inst = newRecorded(0)
		inst.Received(f, []byte{0xff, 0xff, 0xff, 0xff}, false)
	})
	require.Less(t, n, uint64(64<<10))
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)
}

func TestFixedHeaderSend(t *testing.T) {
	f := mustFixedHeader(t, 8, 2, 2)
	r, inst := newRecorded(0)
	payload := []byte("body")
	// The length field in the metadata is overwritten; a longer header is
	// truncated.
	f.NewSentMessage(inst, payload, Metadata{HeaderMetadataKey: []byte("AB\xff\xff1234extra")}, true)
	require.Len(t, r.sent, 2)
	require.Same(t, &payload[0], &r.sent[1][0])
	require.Equal(t, fh("AB", "1234", "body"), r.wire())

	// Short header: zero-filled. Absent or wrong type: zeros.
	r, inst = newRecorded(0)
	f.NewSentMessage(inst, []byte("x"), Metadata{HeaderMetadataKey: []byte("A")}, true)
	f.NewSentMessage(inst, nil, nil, true)
	f.NewSentMessage(inst, []byte("y"), Metadata{HeaderMetadataKey: "AB"}, true)
	require.Equal(t, cat(fh("A", "", "x"), fh("", "", ""), fh("", "", "y")), r.wire())

	// Length includes the header; 8-byte field.
	g := mustFixedHeader(t, 10, 1, 8, WithLengthIncludesHeader(true))
	r, inst = newRecorded(0)
	g.NewSentMessage(inst, []byte("abc"), nil, true)
	require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 0, 0, 13, 0, 'a', 'b', 'c'}, r.wire())
}

func TestFixedHeaderPartialSend(t *testing.T) {
	f := mustFixedHeader(t, 8, 2, 2, WithMaxMessageSize(6))
	r, inst := newRecorded(0)
	first := Metadata{HeaderMetadataKey: []byte("P1")}
	f.NewSentMessage(inst, []byte("ab"), first, false)
	f.NewSentMessage(inst, []byte("cd"), nil, false)
	require.Empty(t, r.sent)
	f.NewSentMessage(inst, []byte("ef"), nil, true) // header from the first part
	f.NewSentMessage(inst, []byte("g"), first, false)
	f.NewSentMessage(inst, []byte("h"), Metadata{HeaderMetadataKey: []byte("P2")}, true) // the last part wins
	require.Equal(t, cat(fh("P1", "", "abcdef"), fh("P2", "", "gh")), r.wire())

	f.NewSentMessage(inst, []byte("1234"), nil, false)
	f.NewSentMessage(inst, []byte("567"), nil, true)
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)

	r2, inst2 := newRecorded(0)
	feed(f, inst2, bytewise(cat(fh("P1", "", "abcdef"), fh("P2", "", "gh"))), true)
	require.Equal(t, []string{"abcdef", "gh"}, strs(r2.messages()))
	require.NoError(t, r2.err())
}

func TestFixedHeaderSendTooLarge(t *testing.T) {
	f := mustFixedHeader(t, 1, 0, 1)
	r, inst := newRecorded(0)
	f.NewSentMessage(inst, make([]byte, 256), nil, true)
	require.ErrorIs(t, r.err(), ErrMessageTooLarge)
	require.Empty(t, r.sent)
	require.ErrorIs(t, f.CheckMessage(make([]byte, 256)), ErrMessageTooLarge)
	require.NoError(t, f.CheckMessage(make([]byte, 255)))
}

func TestFixedHeaderLifecycleAndClone(t *testing.T) {
	f := mustFixedHeader(t, 8, 2, 2, WithMaxMessageSize(100))
	r, inst := newRecorded(0)
	f.Start(inst)
	f.Stop(inst)
	require.Equal(t, 1, r.ready)
	require.Equal(t, 1, r.closed)

	f.NewSentMessage(inst, []byte("half"), nil, false)
	c, ok := f.Clone().(*FixedHeader)
	require.True(t, ok)
	require.Equal(t, 100, c.MaxMessageSize())
	require.Equal(t, 8, c.HeaderLen())
	r2, inst2 := newRecorded(0)
	c.NewSentMessage(inst2, []byte("x"), nil, true)
	require.Equal(t, fh("", "", "x"), r2.wire(), "a clone does not inherit a partial message")
}
