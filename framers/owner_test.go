package framers

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// ownerRecorder is a recorder as an Owner (NewOwnedInstance).
type ownerRecorder struct {
	recorder
	allocs, frees, releases, allowances int
}

func (o *ownerRecorder) Send(data []byte) { o.sent = append(o.sent, data) }
func (o *ownerRecorder) DeliverOwned(meta Metadata, data, _ []byte, eom bool) {
	o.deliveries = append(o.deliveries, delivery{meta: meta, data: bytes.Clone(data), eom: eom})
}
func (o *ownerRecorder) Alloc(n int) []byte      { o.allocs++; return make([]byte, n) }
func (o *ownerRecorder) Free([]byte)             { o.frees++ }
func (o *ownerRecorder) Ready()                  { o.ready++ }
func (o *ownerRecorder) Fail(err error)          { o.fails = append(o.fails, err) }
func (o *ownerRecorder) Prepend(f Framer)        { o.prepended = append(o.prepended, f) }
func (o *ownerRecorder) Release([]byte)          { o.releases++ }
func (o *ownerRecorder) Allowance(spent int) int { o.allowances++; return 1 << 20 }

// An Instance with an Owner calls its methods where one with Hooks calls
// the functions: a length-prefix framer is Ready, frames what is sent,
// delivers what is received (across reads), fails, and prepends.
func TestOwnedInstance(t *testing.T) {
	o := &ownerRecorder{}
	inst := NewOwnedInstance(o, 0)
	f := NewLengthPrefix()
	f.Start(inst)
	require.Equal(t, 1, o.ready)
	f.NewSentMessage(inst, []byte("hello"), nil, true)
	require.Equal(t, []byte("\x00\x00\x00\x05hello"), o.wire())
	f.NewSentMessage(inst, nil, nil, true)
	inst.Allow(1, 1) // the owner's Allowance is asked for more
	inst.Received(f, []byte("\x00\x00\x00\x03ab"), false)
	inst.Received(f, []byte("c\x00\x00\x00\x01z"), false)
	require.Equal(t, [][]byte{[]byte("abc"), []byte("z")}, o.messages())
	require.Positive(t, o.allowances)
	inst.PrependFramer(NewLengthPrefix())
	require.Len(t, o.prepended, 1)
	inst.FailConnection(errors.New("boom"))
	require.EqualError(t, o.err(), "boom")
	inst.Send([]byte("late"))
	require.Len(t, o.sent, 3, "nothing is sent after a failure")
}
