package taps

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
)

// mcTestFramer is a comparable framer (a pointer): each value is its own
// metadata namespace.
type mcTestFramer struct{ name string }

func (*mcTestFramer) Start(*framers.Instance)                                          {}
func (*mcTestFramer) Stop(*framers.Instance)                                           {}
func (*mcTestFramer) NewSentMessage(*framers.Instance, []byte, framers.Metadata, bool) {}
func (*mcTestFramer) HandleReceivedData(*framers.Instance)                             {}

// mcSliceFramer is not comparable (it holds a slice): its namespace is its
// type.
type mcSliceFramer struct{ tags []string }

func (mcSliceFramer) Start(*framers.Instance)                                          {}
func (mcSliceFramer) Stop(*framers.Instance)                                           {}
func (mcSliceFramer) NewSentMessage(*framers.Instance, []byte, framers.Metadata, bool) {}
func (mcSliceFramer) HandleReceivedData(*framers.Instance)                             {}

func TestMessageContextSetters(t *testing.T) {
	tests := []struct {
		name string
		set  func(*MessageContext) *MessageContext
		p    Property
		want any
	}{
		{"Lifetime", func(m *MessageContext) *MessageContext { return m.Lifetime(time.Second) }, MsgLifetime, time.Second},
		{"Priority", func(m *MessageContext) *MessageContext { return m.Priority(7) }, MsgPriority, int64(7)},
		{"Ordered", func(m *MessageContext) *MessageContext { return m.Ordered(false) }, MsgOrdered, false},
		{"SafelyReplayable", func(m *MessageContext) *MessageContext { return m.SafelyReplayable(true) }, SafelyReplayable, true},
		{"Final", func(m *MessageContext) *MessageContext { return m.Final(true) }, Final, true},
		{"ChecksumLen", func(m *MessageContext) *MessageContext { return m.ChecksumLen(0) }, MsgChecksumLen, int64(0)},
		{"FullChecksum", func(m *MessageContext) *MessageContext { return m.FullChecksum() }, MsgChecksumLen, FullCoverage},
		{"Reliable", func(m *MessageContext) *MessageContext { return m.Reliable(false) }, MsgReliable, false},
		{"CapacityProfile", func(m *MessageContext) *MessageContext { return m.CapacityProfile(Scavenger) }, MsgCapacityProfile, Scavenger},
		{"NoFragmentation", func(m *MessageContext) *MessageContext { return m.NoFragmentation(true) }, NoFragmentation, true},
		{"NoSegmentation", func(m *MessageContext) *MessageContext { return m.NoSegmentation(true) }, NoSegmentation, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := NewMessageContext()
			assert.False(t, mc.IsSet(tt.p))
			_, ok := mc.Get(tt.p)
			assert.False(t, ok)
			assert.Same(t, mc, tt.set(mc), "fluent")
			got, ok := mc.Get(tt.p)
			require.True(t, ok)
			assert.Equal(t, tt.want, got)
			assert.True(t, mc.IsSet(tt.p))
			assert.NoError(t, mc.Err())
		})
	}
	// Chaining; the zero value works.
	var mc MessageContext
	mc.Priority(1).Final(true).SafelyReplayable(true)
	assert.True(t, mc.IsSet(Final))
	assert.True(t, mc.IsSet(MsgPriority))
}

func TestMessageContextErr(t *testing.T) {
	tests := []struct {
		name string
		set  func(*MessageContext) *MessageContext
		p    Property
		v    any
	}{
		{"zero lifetime", func(m *MessageContext) *MessageContext { return m.Lifetime(0) }, MsgLifetime, time.Duration(0)},
		{"negative lifetime", func(m *MessageContext) *MessageContext { return m.Lifetime(-time.Second) }, MsgLifetime, -time.Second},
		{"negative priority", func(m *MessageContext) *MessageContext { return m.Priority(-1) }, MsgPriority, -1},
		{"negative checksum", func(m *MessageContext) *MessageContext { return m.ChecksumLen(-1) }, MsgChecksumLen, -1},
		{"bad profile", func(m *MessageContext) *MessageContext { return m.CapacityProfile(CapacityProfile(3)) }, MsgCapacityProfile, CapacityProfile(3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := NewMessageContext()
			tt.set(mc)
			err := mc.Err()
			require.ErrorIs(t, err, ErrInvalidPropertyValue)
			var pe *PropertyError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.p, pe.Property)
			assert.Equal(t, tt.v, pe.Value)
			assert.False(t, mc.IsSet(tt.p), "invalid value not stored")
			_, rerr := mc.resolve(nil)
			assert.Equal(t, err, rerr, "resolve reports Err")
		})
	}

	// The oldest error wins; a valid value for the property clears its error.
	mc := NewMessageContext().Priority(5).Priority(-1).Lifetime(0).Priority(2)
	var pe *PropertyError
	require.ErrorAs(t, mc.Err(), &pe)
	assert.Equal(t, MsgLifetime, pe.Property)
	v, _ := mc.Get(MsgPriority)
	assert.Equal(t, int64(2), v)
	require.NoError(t, mc.Set(MsgLifetime, Infinite))
	assert.NoError(t, mc.Err())

	// An invalid value keeps the previous valid one.
	mc = NewMessageContext().Priority(3).Priority(-3)
	v, _ = mc.Get(MsgPriority)
	assert.Equal(t, int64(3), v)
	assert.Error(t, mc.Err())

	var nilMC *MessageContext
	assert.NoError(t, nilMC.Err())
}

func TestMessageContextSet(t *testing.T) {
	tests := []struct {
		p    Property
		v    any
		want error
	}{
		{MsgLifetime, Infinite, nil},
		{MsgLifetime, Disabled, ErrInvalidPropertyValue},
		{MsgPriority, uint16(4), nil},
		{MsgPriority, "4", ErrInvalidPropertyType},
		{Property("msg-prio"), 4, nil},
		{Property("idempotent"), true, nil},
		{Final, 1, ErrInvalidPropertyType},
		{MsgChecksumLen, FullCoverage, nil},
		{MsgChecksumLen, Unlimited, ErrInvalidPropertyValue},
		{MsgCapacityProfile, ConstantRateStreaming, nil},
		{ConnPriority, 1, ErrInvalidPropertyType},
		{Reliability, Require, ErrInvalidPropertyType},
		{ConnState, 1, ErrInvalidPropertyType},
		{Property("ecn"), 1, ErrUnknownProperty},
	}
	for _, tt := range tests {
		mc := NewMessageContext()
		err := mc.Set(tt.p, tt.v)
		if tt.want == nil {
			require.NoError(t, err, "%s", tt.p)
			assert.True(t, mc.IsSet(tt.p), "%s", tt.p)
			continue
		}
		require.ErrorIs(t, err, tt.want, "%s=%v", tt.p, tt.v)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		assert.False(t, mc.IsSet(tt.p))
		assert.NoError(t, mc.Err(), "Set returns its error, it does not record it")
	}
}

func TestMessageContextFramerMetadata(t *testing.T) {
	f1, f2 := &mcTestFramer{"a"}, &mcTestFramer{"a"} // equal contents, distinct framers
	s1, s2 := mcSliceFramer{[]string{"x"}}, mcSliceFramer{}

	mc := NewMessageContext().
		SetFramerMetadata(f1, "type", 1).
		SetFramerMetadata(f2, "type", 2).
		SetFramerMetadata(f2, "flags", "syn").
		SetFramerMetadata(s1, "k", "slice")

	assert.Equal(t, framers.Metadata{"type": 1}, mc.FramerMetadata(f1))
	assert.Equal(t, framers.Metadata{"type": 2, "flags": "syn"}, mc.FramerMetadata(f2))
	assert.Nil(t, mc.FramerMetadata(&mcTestFramer{"a"}), "unknown framer sees nothing")
	// Non-comparable framers share a namespace per type.
	assert.Equal(t, framers.Metadata{"k": "slice"}, mc.FramerMetadata(s2))

	// FramerMetadata returns a copy.
	md := mc.FramerMetadata(f1)
	md["type"] = 99
	assert.Equal(t, framers.Metadata{"type": 1}, mc.FramerMetadata(f1))

	// Receive side: the namespace is replaced by a copy.
	in := framers.Metadata{"len": 4}
	mc.setFramerMetadata(f1, in)
	in["len"] = 5
	assert.Equal(t, framers.Metadata{"len": 4}, mc.FramerMetadata(f1))
	mc.setFramerMetadata(f1, nil)
	assert.Nil(t, mc.FramerMetadata(f1))
	assert.Equal(t, framers.Metadata{"type": 2, "flags": "syn"}, mc.FramerMetadata(f2))

	// A nil framer is a namespace of its own.
	mc.SetFramerMetadata(nil, "n", true)
	assert.Equal(t, framers.Metadata{"n": true}, mc.FramerMetadata(nil))
	var nilMC *MessageContext
	assert.Nil(t, nilMC.FramerMetadata(f1))
}

func TestMessageContextReceiveMetadata(t *testing.T) {
	mc := NewMessageContext()
	_, ok := mc.ECN()
	assert.False(t, ok)
	assert.False(t, mc.EarlyData())
	assert.False(t, mc.IsFinal())
	mc.setECN(3)
	mc.setEarlyData(true)
	mc.setReceivedFinal(true)
	ecn, ok := mc.ECN()
	assert.True(t, ok)
	assert.Equal(t, uint8(3), ecn)
	assert.True(t, mc.EarlyData())
	assert.True(t, mc.IsFinal())
	assert.False(t, mc.IsSet(Final), "the received final flag is not the final property")

	var nilMC *MessageContext
	_, ok = nilMC.ECN()
	assert.False(t, ok)
	assert.False(t, nilMC.EarlyData())
	assert.False(t, nilMC.IsFinal())
}

func TestMessageContextSnapshot(t *testing.T) {
	f := &mcTestFramer{}
	mc := NewMessageContext().Priority(1).Lifetime(-1).SetFramerMetadata(f, "k", "v")
	mc.setECN(1)
	snap := mc.snapshot()

	mc.Priority(9).SafelyReplayable(true).SetFramerMetadata(f, "k", "changed")
	mc.setECN(2)

	v, _ := snap.Get(MsgPriority)
	assert.Equal(t, int64(1), v)
	assert.False(t, snap.IsSet(SafelyReplayable))
	assert.Equal(t, framers.Metadata{"k": "v"}, snap.FramerMetadata(f))
	ecn, _ := snap.ECN()
	assert.Equal(t, uint8(1), ecn)
	assert.Error(t, snap.Err(), "errors are part of the snapshot")

	var nilMC *MessageContext
	empty := nilMC.snapshot()
	require.NotNil(t, empty)
	assert.False(t, empty.IsSet(Final))
}

func TestMessageContextResolve(t *testing.T) {
	defaults := NewTransportProperties(UnreliableDatagram)
	mustProp(defaults.Set(MsgPriority, 50))
	mustProp(defaults.Set(ConnCapacityProfile, LowLatencyInteractive))

	tests := []struct {
		name     string
		mc       *MessageContext
		defaults *TransportProperties
		want     map[Property]any // absent key: must be absent
	}{
		{"nil context, nil defaults", nil, nil, map[Property]any{
			MsgLifetime: Infinite, MsgPriority: int64(100), SafelyReplayable: false, Final: false,
			MsgChecksumLen: FullCoverage, MsgCapacityProfile: CapacityDefault,
			NoFragmentation: false, NoSegmentation: false,
		}},
		{"defaults from transport properties", NewMessageContext(), defaults, map[Property]any{
			MsgLifetime: Infinite, MsgPriority: int64(50), SafelyReplayable: true, Final: false,
			MsgChecksumLen: FullCoverage, MsgCapacityProfile: LowLatencyInteractive,
			NoFragmentation: false, NoSegmentation: false,
		}},
		{"context overrides", NewMessageContext().Priority(1).SafelyReplayable(false).Ordered(true).
			Reliable(false).CapacityProfile(Scavenger).Lifetime(time.Second).Final(true).ChecksumLen(4),
			defaults, map[Property]any{
				MsgLifetime: time.Second, MsgPriority: int64(1), SafelyReplayable: false, Final: true,
				MsgChecksumLen: int64(4), MsgCapacityProfile: Scavenger, MsgOrdered: true, MsgReliable: false,
				NoFragmentation: false, NoSegmentation: false,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.mc.resolve(tt.defaults)
			require.NoError(t, err)
			want := &messages.Properties{Values: map[string]*messages.PropertyValue{}}
			for p, v := range tt.want {
				want.Values[string(p)] = encodeValue(v)
			}
			assert.Equal(t, len(want.Values), len(got.Values))
			for k, v := range want.Values {
				assert.Equal(t, v.String(), got.Values[k].String(), k)
			}
		})
	}

	// Explicit msgOrdered / msgReliable defaults on the transport properties are passed on.
	tp := NewTransportProperties()
	mustProp(tp.Set(MsgReliable, false))
	got, err := NewMessageContext().resolve(tp)
	require.NoError(t, err)
	b, ok := boolOf(got, MsgReliable)
	assert.True(t, ok)
	assert.False(t, b)
	_, ok = boolOf(got, MsgOrdered)
	assert.False(t, ok)
}

func TestMessageContextConcurrent(t *testing.T) {
	mc := NewMessageContext()
	framerList := []framers.Framer{&mcTestFramer{"a"}, &mcTestFramer{"b"}}
	tp := NewTransportProperties()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				mc.Priority(i).Final(i%2 == 0).Lifetime(time.Duration(i+1) * time.Millisecond)
				mc.SetFramerMetadata(framerList[g%2], fmt.Sprint(g), i)
				_ = mc.FramerMetadata(framerList[(g+1)%2])
				_, _ = mc.Get(MsgPriority)
				_ = mc.IsSet(Final)
				_ = mc.Err()
				_ = mc.Set(MsgChecksumLen, i)
				if _, err := mc.resolve(tp); err != nil {
					panic(err)
				}
				snap := mc.snapshot()
				_, _ = snap.Get(Final)
				mc.setECN(uint8(i))
				_, _ = mc.ECN()
				mc.setEarlyData(i%3 == 0)
				_ = mc.EarlyData()
				mc.setReceivedFinal(true)
				_ = mc.IsFinal()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, mc.FramerMetadata(framerList[0]), 4)
	assert.Len(t, mc.FramerMetadata(framerList[1]), 4)
	assert.NoError(t, mc.Err())
}
