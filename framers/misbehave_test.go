package framers

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A message whose body is earmarked (promised by
// DeliverAndAdvanceReceiveCursor beyond the buffer) and whose stream ends in
// the same Received call is truncated: the connection must fail with
// ErrTruncated, not end as if the partial message were all there is.
func TestInstanceEarmarkThenEndOfStreamInOneRead(t *testing.T) {
	r, inst := newRecorded(0)
	inst.Received(oneByteLen(), cat([]byte{10}, []byte("01")), true)
	require.ErrorIs(t, r.err(), ErrTruncated)
}

// chunked is a framer whose messages are made of chunks: a 2-byte header
// (body length, last-chunk flag) before each chunk's body, which is handed
// to DeliverAndAdvanceReceiveCursor at once with endOfMessage set only for
// the last chunk.
func chunked() Framer {
	return &funcFramer{recv: func(i *Instance) {
		h, ok := i.Parse(2, 2)
		if !ok {
			return
		}
		n, last := int(h[0]), h[1] == 1
		i.AdvanceReceiveCursor(2)
		i.DeliverAndAdvanceReceiveCursor(nil, n, last)
	}}
}

// The earmarked rest of a DeliverAndAdvanceReceiveCursor ends the message
// only when the framer said endOfMessage.
func TestInstanceEarmarkKeepsEndOfMessage(t *testing.T) {
	r, inst := newRecorded(0)
	f := chunked()
	inst.Received(f, cat([]byte{4, 0}, []byte("ab")), false) // a chunk, not the last, 2 of 4 bytes here
	inst.Received(f, cat([]byte("cd"), []byte{2, 1}, []byte("ef")), false)
	require.NoError(t, r.err())
	require.Equal(t, []string{"abcdef"}, strs(r.messages()))
	require.Equal(t, []delivery{
		{data: []byte("ab"), eom: false},
		{data: []byte("cd"), eom: false},
		{data: []byte("ef"), eom: true},
	}, normalise(r.deliveries))
}

// A framer that delivers without ever consuming what it was given (here a
// zero-length message per call) must not be called again and again without
// end: that would spin the reader and grow the deliveries without bound.
func TestInstanceDeliverWithoutConsumingIsNotCalledForever(t *testing.T) {
	for _, tc := range []struct {
		name    string
		deliver func(i *Instance)
	}{
		{"zero-length Deliver", func(i *Instance) { i.Deliver(nil, nil, true) }},
		{"zero-length DeliverAndAdvance", func(i *Instance) { i.DeliverAndAdvanceReceiveCursor(nil, 0, true) }},
		{"Deliver of the unconsumed bytes", func(i *Instance) {
			b, _ := i.Parse(0, -1)
			i.Deliver(nil, b, true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			f := &funcFramer{recv: func(i *Instance) {
				calls++
				if calls > 100000 {
					i.FailConnection(nil) // the test's own way out
					return
				}
				tc.deliver(i)
			}}
			r, inst := newRecorded(0)
			inst.Received(f, []byte("abc"), false)
			require.Less(t, calls, 100000, "HandleReceivedData called without end")
			require.NoError(t, r.err())
		})
	}
}

// A framer that delivers again while the bytes promised to an earlier
// DeliverAndAdvanceReceiveCursor are still due would break that promise
// (the earlier message's rest would be lost or mixed with the new one):
// the connection fails instead.
func TestInstanceDeliverWhileEarmarkedFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		again func(i *Instance)
	}{
		{"DeliverAndAdvance", func(i *Instance) { i.DeliverAndAdvanceReceiveCursor(nil, 2, true) }},
		{"Deliver", func(i *Instance) { i.Deliver(nil, []byte("zz"), true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, inst := newRecorded(0)
			f := &funcFramer{recv: func(i *Instance) {
				i.DeliverAndAdvanceReceiveCursor(nil, 10, true) // 10 promised, 3 here
				tc.again(i)
			}}
			inst.Received(f, []byte("abc"), false)
			inst.Received(f, []byte("defghij"), false)
			require.ErrorIs(t, r.err(), ErrDeframingFailed, "messages %q", strs(r.messages()))
		})
	}
}
