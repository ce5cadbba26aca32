package taps

import (
	"errors"
	"github.com/gotaps/gotaps/stacks"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// propRFCDefaults is RFC 9622 §6.2, §8.1, §8.2 and §9.1.3 (checklist §3.2-3.5),
// per role where the default depends on it.
var propRFCDefaults = []struct {
	p              Property
	initiate, lstn any
}{
	{Reliability, Require, Require},
	{PreserveMsgBoundaries, NoPreference, NoPreference},
	{PerMsgReliability, NoPreference, NoPreference},
	{PreserveOrder, Require, Require},
	{ZeroRTTMsg, NoPreference, NoPreference},
	{Multistreaming, Prefer, Prefer},
	{FullChecksumSend, Require, Require},
	{FullChecksumRecv, Require, Require},
	{CongestionControl, Require, Require},
	{KeepAlive, NoPreference, NoPreference},
	{Interface, map[string]Preference{}, map[string]Preference{}},
	{PvD, map[string]Preference{}, map[string]Preference{}},
	{UseTemporaryLocalAddress, Prefer, Avoid},
	{Multipath, MultipathDisabled, MultipathPassive},
	{AdvertisesAltaddr, false, false},
	{Direction, Bidirectional, Bidirectional},
	{SoftErrorNotify, NoPreference, NoPreference},
	{ActiveReadBeforeSend, NoPreference, NoPreference},
	{RetransmitNotify, NoPreference, NoPreference},
	{RecvChecksumLen, FullCoverage, FullCoverage},
	{ConnPriority, int64(100), int64(100)},
	{ConnTimeout, Disabled, Disabled},
	{KeepAliveTimeout, Disabled, Disabled},
	{ConnScheduler, WeightedFairQueueing, WeightedFairQueueing},
	{ConnCapacityProfile, CapacityDefault, CapacityDefault},
	{MultipathPolicy, Handover, Handover},
	{MinSendRate, Unlimited, Unlimited},
	{MinRecvRate, Unlimited, Unlimited},
	{MaxSendRate, Unlimited, Unlimited},
	{MaxRecvRate, Unlimited, Unlimited},
	{GroupConnLimit, Unlimited, Unlimited},
	{IsolateSession, false, false},
	{RetransmitNotifyThreshold, Disabled, Disabled},
	{TCPUserTimeoutValue, 5 * time.Minute, 5 * time.Minute},
	{TCPUserTimeoutEnabled, false, false},
	{TCPUserTimeoutChangeable, true, true},
	{MsgLifetime, Infinite, Infinite},
	{MsgPriority, int64(100), int64(100)},
	{MsgOrdered, true, true}, // preserveOrder Require, read back
	{SafelyReplayable, false, false},
	{Final, false, false},
	{MsgChecksumLen, FullCoverage, FullCoverage},
	{MsgReliable, true, true},                              // reliability Require, read back
	{MsgCapacityProfile, CapacityDefault, CapacityDefault}, // connCapacityProfile
	{NoFragmentation, false, false},
	{NoSegmentation, false, false},
}

var propReadOnlyList = []Property{ConnState, CanSend, CanReceive, SingularTransmissionMsgMaxLen, SendMsgMaxLen, RecvMsgMaxLen}

func TestPropertiesDefaults(t *testing.T) {
	tp := NewTransportProperties()
	var zero TransportProperties
	covered := map[Property]bool{}
	for _, tt := range propRFCDefaults {
		covered[tt.p] = true
		got, ok := tp.Get(tt.p)
		require.True(t, ok, "%s", tt.p)
		assert.Equal(t, tt.initiate, got, "%s (unset role = initiate)", tt.p)
		got, _ = tp.ForRole(false).Get(tt.p)
		assert.Equal(t, tt.initiate, got, "%s initiate", tt.p)
		got, _ = tp.ForRole(true).Get(tt.p)
		assert.Equal(t, tt.lstn, got, "%s listen", tt.p)
		got, _ = zero.Get(tt.p)
		assert.Equal(t, tt.initiate, got, "%s zero value", tt.p)
		assert.False(t, tp.IsSet(tt.p), "%s", tt.p)
		assert.False(t, tp.ForRole(true).IsSet(tt.p), "%s", tt.p)
	}
	for _, p := range propReadOnlyList {
		covered[p] = true
	}
	for _, p := range tp.Properties() {
		assert.True(t, covered[p], "property %s has no default in the test table", p)
	}
	assert.Len(t, tp.Properties(), len(covered))
	assert.Equal(t, tp.Properties(), tp.Properties(), "stable order")

	// Rendezvous uses Avoid (like Listen) and Disabled (like Initiate).
	rv := tp.forRendezvous()
	got, _ := rv.Get(UseTemporaryLocalAddress)
	assert.Equal(t, Avoid, got)
	got, _ = rv.Get(Multipath)
	assert.Equal(t, MultipathDisabled, got)
}

func TestPropertiesNilReceiverReads(t *testing.T) {
	var tp *TransportProperties
	v, ok := tp.Get(Reliability)
	assert.True(t, ok)
	assert.Equal(t, Require, v)
	assert.Equal(t, Prefer, tp.Preference(Multistreaming))
	assert.False(t, tp.IsSet(Reliability))
	assert.NotNil(t, tp.Clone())
}

func TestPropertyKind(t *testing.T) {
	tests := []struct {
		p    Property
		want PropertyKind
	}{
		{Reliability, KindSelection},
		{Interface, KindSelection},
		{Multipath, KindSelection},
		{Direction, KindSelection},
		{RetransmitNotify, KindSelection},
		{ConnPriority, KindConnection},
		{TCPUserTimeoutValue, KindConnection},
		{RetransmitNotifyThreshold, KindConnection},
		{MultipathPolicy, KindConnection},
		{ConnState, KindReadOnly},
		{CanSend, KindReadOnly},
		{CanReceive, KindReadOnly},
		{SingularTransmissionMsgMaxLen, KindReadOnly},
		{SendMsgMaxLen, KindReadOnly},
		{RecvMsgMaxLen, KindReadOnly},
		{MsgLifetime, KindMessage},
		{Final, KindMessage},
		{NoSegmentation, KindMessage},
		{Property("conn-prio"), KindConnection},
		{Property("nonsense"), KindUnknown},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.p.Kind(), "%s", tt.p)
	}
	for _, p := range NewTransportProperties().Properties() {
		assert.NotEqual(t, KindUnknown, p.Kind(), "%s", p)
		assert.Equal(t, string(p), p.String())
	}
	for _, tt := range []struct {
		k    PropertyKind
		want string
	}{{KindUnknown, "Unknown"}, {KindSelection, "Selection"}, {KindConnection, "Connection"}, {KindMessage, "Message"}, {KindReadOnly, "ReadOnly"}} {
		assert.Equal(t, tt.want, tt.k.String())
	}
}

func TestPropertiesProfile(t *testing.T) {
	tests := []struct {
		profile                            Profile
		name                               string
		reliability, order, cc, boundaries Preference
		safelyReplayable                   bool
	}{
		{ReliableInorderStream, "reliable-inorder-stream", Require, Require, Require, NoPreference, false},
		{ReliableMessage, "reliable-message", Require, Require, Require, Require, false},
		{UnreliableDatagram, "unreliable-datagram", Avoid, Avoid, NoPreference, Require, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.name, tt.profile.String())
			p, err := ParseProfile(tt.name)
			require.NoError(t, err)
			assert.Equal(t, tt.profile, p)
			tp := NewTransportProperties(tt.profile)
			assert.Equal(t, tt.reliability, tp.Preference(Reliability))
			assert.Equal(t, tt.order, tp.Preference(PreserveOrder))
			assert.Equal(t, tt.cc, tp.Preference(CongestionControl))
			assert.Equal(t, tt.boundaries, tp.Preference(PreserveMsgBoundaries))
			v, _ := tp.Get(SafelyReplayable)
			assert.Equal(t, tt.safelyReplayable, v)
			assert.True(t, tp.IsSet(Reliability))
			// Everything else keeps the RFC defaults.
			assert.Equal(t, Require, tp.Preference(FullChecksumSend))
			assert.Equal(t, Prefer, tp.Preference(Multistreaming))
			require.NoError(t, tp.Validate(false))
			require.NoError(t, tp.Validate(true))
		})
	}
	// Profiles apply in order; unknown values are ignored.
	tp := NewTransportProperties(UnreliableDatagram, ReliableMessage, Profile(42))
	assert.Equal(t, Require, tp.Preference(Reliability))
	assert.Equal(t, "Profile(42)", Profile(42).String())
	for _, s := range []string{"ReliableMessage", "RELIABLE_MESSAGE", "reliable_message"} {
		p, err := ParseProfile(s)
		require.NoError(t, err, s)
		assert.Equal(t, ReliableMessage, p)
	}
	_, err := ParseProfile("unreliable-message") // there is no such profile
	assert.ErrorIs(t, err, ErrInvalidPropertyValue)
	assert.EqualError(t, err, `invalid property value: unknown profile "unreliable-message": `+
		`want reliable-inorder-stream, reliable-message or unreliable-datagram`, "the error lists the profiles")
}

func TestPropertiesSetValid(t *testing.T) {
	tests := []struct {
		p    Property
		v    any
		want any
	}{
		{Reliability, Prohibit, Prohibit},
		{PreserveMsgBoundaries, Require, Require},
		{UseTemporaryLocalAddress, Require, Require},
		{AdvertisesAltaddr, true, true},
		{Multipath, MultipathActive, MultipathActive},
		{Direction, UnidirectionalReceive, UnidirectionalReceive},
		{Interface, map[string]Preference{"en0": Require, "wlan0": NoPreference}, map[string]Preference{"en0": Require}},
		{PvD, map[string]Preference{"pvd.example.org": Prefer}, map[string]Preference{"pvd.example.org": Prefer}},
		{RecvChecksumLen, 0, int64(0)},
		{RecvChecksumLen, FullCoverage, FullCoverage},
		{ConnPriority, 0, int64(0)},
		{ConnPriority, uint64(7), int64(7)},
		{ConnTimeout, 5 * time.Second, 5 * time.Second},
		{ConnTimeout, Disabled, Disabled},
		{KeepAliveTimeout, time.Nanosecond, time.Nanosecond},
		{ConnScheduler, FairCapacity, FairCapacity},
		{ConnCapacityProfile, LowLatencyInteractive, LowLatencyInteractive},
		{MultipathPolicy, Aggregate, Aggregate},
		{MinSendRate, 1, int64(1)},
		{MaxRecvRate, int64(math.MaxInt64), int64(math.MaxInt64)},
		{MaxSendRate, Unlimited, Unlimited},
		{GroupConnLimit, uint8(3), int64(3)},
		{IsolateSession, true, true},
		{RetransmitNotify, Prefer, Prefer},
		{RetransmitNotifyThreshold, 1, int64(1)},
		{RetransmitNotifyThreshold, Disabled, Disabled},
		{TCPUserTimeoutValue, 30 * time.Second, 30 * time.Second},
		{TCPUserTimeoutEnabled, true, true},
		{TCPUserTimeoutChangeable, false, false},
		{MsgLifetime, time.Second, time.Second},
		{MsgLifetime, Infinite, Infinite},
		{MsgPriority, int16(1), int64(1)},
		{MsgOrdered, false, false},
		{SafelyReplayable, true, true},
		{Final, true, true},
		{MsgChecksumLen, 8, int64(8)},
		{MsgReliable, false, false},
		{MsgCapacityProfile, Scavenger, Scavenger},
		{NoFragmentation, true, true},
		{NoSegmentation, true, true},
		{Property("conn-prio"), 5, int64(5)}, // seed spelling accepted by Set
		{Property("ConnPriority"), 6, int64(6)},
	}
	for _, tt := range tests {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(tt.p, tt.v), "%s=%v", tt.p, tt.v)
		got, ok := tp.Get(tt.p)
		require.True(t, ok)
		assert.Equal(t, tt.want, got, "%s", tt.p)
		assert.True(t, tp.IsSet(tt.p), "%s", tt.p)
		require.NoError(t, tp.Default(tt.p))
		assert.False(t, tp.IsSet(tt.p), "%s after Default", tt.p)
	}
}

func TestPropertiesSetEveryIntegerType(t *testing.T) {
	for _, v := range []any{int(3), int8(3), int16(3), int32(3), int64(3), uint(3), uint8(3), uint16(3), uint32(3), uint64(3)} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(MaxSendRate, v), "%T", v)
		got, _ := tp.Get(MaxSendRate)
		assert.Equal(t, int64(3), got, "%T", v)
	}
}

func TestPropertiesSetInvalid(t *testing.T) {
	tests := []struct {
		p    Property
		v    any
		want error
	}{
		// preferences
		{Reliability, true, ErrInvalidPropertyType},
		{Reliability, 2, ErrInvalidPropertyType},
		{Reliability, "Require", ErrInvalidPropertyType},
		{Reliability, nil, ErrInvalidPropertyType},
		{Reliability, Preference(3), ErrInvalidPropertyValue},
		{Reliability, Preference(-3), ErrInvalidPropertyValue},
		{UseTemporaryLocalAddress, Disabled, ErrInvalidPropertyType},
		// Booleans
		{AdvertisesAltaddr, 1, ErrInvalidPropertyType},
		{SafelyReplayable, Prefer, ErrInvalidPropertyType},
		{TCPUserTimeoutEnabled, "true", ErrInvalidPropertyType},
		// enums
		{Multipath, Require, ErrInvalidPropertyType},
		{Multipath, MultipathMode(3), ErrInvalidPropertyValue},
		{Direction, 1, ErrInvalidPropertyType},
		{Direction, CommunicationDirection(9), ErrInvalidPropertyValue},
		{ConnScheduler, "FCFS", ErrInvalidPropertyType},
		{ConnScheduler, Scheduler(6), ErrInvalidPropertyValue},
		{ConnCapacityProfile, 36, ErrInvalidPropertyType},
		{ConnCapacityProfile, CapacityProfile(2), ErrInvalidPropertyValue},
		{MsgCapacityProfile, CapacityProfile(255), ErrInvalidPropertyValue},
		{MultipathPolicy, MultipathMode(1), ErrInvalidPropertyType},
		{MultipathPolicy, MultipathPolicyMode(3), ErrInvalidPropertyValue},
		// durations
		{ConnTimeout, 5, ErrInvalidPropertyType},
		{ConnTimeout, 5.0, ErrInvalidPropertyType},
		{ConnTimeout, time.Duration(0), ErrInvalidPropertyValue},
		{ConnTimeout, -time.Second, ErrInvalidPropertyValue},
		{ConnTimeout, Infinite, ErrInvalidPropertyValue},
		{KeepAliveTimeout, Unlimited, ErrInvalidPropertyValue},
		{MsgLifetime, Disabled, ErrInvalidPropertyValue},
		{MsgLifetime, time.Duration(0), ErrInvalidPropertyValue},
		{MsgLifetime, int64(time.Second), ErrInvalidPropertyType},
		{TCPUserTimeoutValue, 0 * time.Second, ErrInvalidPropertyValue},
		{TCPUserTimeoutValue, Disabled, ErrInvalidPropertyType},
		{TCPUserTimeoutValue, 300, ErrInvalidPropertyType},
		// integers
		{ConnPriority, -1, ErrInvalidPropertyValue},
		{ConnPriority, int8(-1), ErrInvalidPropertyValue},
		{ConnPriority, uint64(math.MaxUint64), ErrInvalidPropertyValue},
		{ConnPriority, Unlimited, ErrInvalidPropertyType},
		{ConnPriority, 1.5, ErrInvalidPropertyType},
		{ConnPriority, "100", ErrInvalidPropertyType},
		{ConnPriority, time.Second, ErrInvalidPropertyType},
		{MsgPriority, -100, ErrInvalidPropertyValue},
		{MinSendRate, 0, ErrInvalidPropertyValue},
		{MinRecvRate, -1, ErrInvalidPropertyValue},
		{MaxSendRate, FullCoverage, ErrInvalidPropertyValue},
		{MaxRecvRate, uint(0), ErrInvalidPropertyValue},
		{GroupConnLimit, 0, ErrInvalidPropertyValue},
		{GroupConnLimit, Disabled, ErrInvalidPropertyValue},
		{RecvChecksumLen, -1, ErrInvalidPropertyValue},
		{RecvChecksumLen, Unlimited, ErrInvalidPropertyValue},
		{MsgChecksumLen, -1, ErrInvalidPropertyValue},
		{RetransmitNotifyThreshold, 0, ErrInvalidPropertyValue},
		{RetransmitNotifyThreshold, Unlimited, ErrInvalidPropertyValue},
		// sets
		{Interface, "en0", ErrInvalidPropertyType},
		{Interface, map[string]bool{"en0": true}, ErrInvalidPropertyType},
		{Interface, map[string]Preference{"": Require}, ErrInvalidPropertyValue},
		{PvD, map[string]Preference{"x": Preference(5)}, ErrInvalidPropertyValue},
		// read-only
		{ConnState, 1, ErrReadOnlyProperty},
		{CanSend, true, ErrReadOnlyProperty},
		{CanReceive, false, ErrReadOnlyProperty},
		{SingularTransmissionMsgMaxLen, NotApplicable, ErrReadOnlyProperty},
		{SendMsgMaxLen, 1500, ErrReadOnlyProperty},
		{RecvMsgMaxLen, 1500, ErrReadOnlyProperty},
		// unknown
		{Property("tcp-uto"), 1, ErrUnknownProperty},
		{Property(""), 1, ErrUnknownProperty},
	}
	for _, tt := range tests {
		tp := NewTransportProperties()
		before := tp.Clone()
		err := tp.Set(tt.p, tt.v)
		require.Error(t, err, "%s=%#v", tt.p, tt.v)
		assert.ErrorIs(t, err, tt.want, "%s=%#v: %v", tt.p, tt.v, err)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		if d := descOf(tt.p); d != nil {
			assert.Equal(t, d.name, pe.Property)
			assert.Equal(t, tt.v, pe.Value)
		}
		assert.True(t, strings.HasPrefix(err.Error(), "set property "), err.Error())
		assert.Equal(t, before, tp, "%s: a failed Set must change nothing", tt.p)
	}
}

func TestPropertiesReadOnly(t *testing.T) {
	tp := NewTransportProperties()
	for _, p := range propReadOnlyList {
		assert.Equal(t, KindReadOnly, p.Kind())
		assert.ErrorIs(t, tp.Set(p, 0), ErrReadOnlyProperty, "%s", p)
		assert.ErrorIs(t, tp.Default(p), ErrReadOnlyProperty, "%s", p)
		_, ok := tp.Get(p)
		assert.False(t, ok, "%s", p)
		assert.False(t, tp.IsSet(p))
		assert.Contains(t, tp.Properties(), p)
	}
	_, ok := tp.Get(Property("bogus"))
	assert.False(t, ok)
	assert.ErrorIs(t, tp.Default(Property("bogus")), ErrUnknownProperty)
}

func TestPropertiesConnTimeoutSetsUTOChangeable(t *testing.T) {
	tp := NewTransportProperties()
	v, _ := tp.Get(TCPUserTimeoutChangeable)
	require.Equal(t, true, v)
	require.NoError(t, tp.Set(ConnTimeout, 10*time.Second))
	v, _ = tp.Get(TCPUserTimeoutChangeable)
	assert.Equal(t, false, v)
	assert.True(t, tp.IsSet(TCPUserTimeoutChangeable))
	// An invalid connTimeout changes nothing.
	tp = NewTransportProperties()
	require.Error(t, tp.Set(ConnTimeout, -time.Second))
	assert.False(t, tp.IsSet(TCPUserTimeoutChangeable))
}

func TestPropertiesPreferenceMethods(t *testing.T) {
	tests := []struct {
		name string
		set  func(*TransportProperties, Property) error
		want Preference
	}{
		{"Require", (*TransportProperties).Require, Require},
		{"Prefer", (*TransportProperties).Prefer, Prefer},
		{"NoPreference", (*TransportProperties).NoPreference, NoPreference},
		{"Ignore", (*TransportProperties).Ignore, NoPreference},
		{"Avoid", (*TransportProperties).Avoid, Avoid},
		{"Prohibit", (*TransportProperties).Prohibit, Prohibit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := NewTransportProperties()
			require.NoError(t, tt.set(tp, ZeroRTTMsg))
			assert.Equal(t, tt.want, tp.Preference(ZeroRTTMsg))
			assert.True(t, tp.IsSet(ZeroRTTMsg))
			for _, p := range []Property{Interface, PvD, Multipath, Direction, AdvertisesAltaddr, ConnTimeout, MsgPriority, Final} {
				err := tt.set(tp, p)
				assert.ErrorIs(t, err, ErrInvalidPropertyType, "%s", p)
			}
			assert.ErrorIs(t, tt.set(tp, ConnState), ErrReadOnlyProperty)
			assert.ErrorIs(t, tt.set(tp, "bogus"), ErrUnknownProperty)
			require.NoError(t, tp.Default(ZeroRTTMsg))
			assert.Equal(t, NoPreference, tp.Preference(ZeroRTTMsg))
			assert.False(t, tp.IsSet(ZeroRTTMsg))
		})
	}
	// Preference of a non-preference property is NoPreference.
	assert.Equal(t, NoPreference, NewTransportProperties().Preference(ConnPriority))
	assert.Equal(t, NoPreference, NewTransportProperties().Preference("bogus"))
}

func TestPropertiesNamedPreferences(t *testing.T) {
	tp := NewTransportProperties()
	require.NoError(t, tp.SetInterface("en0", Require))
	require.NoError(t, tp.SetInterface("Cellular", Prohibit))
	require.NoError(t, tp.SetPvD("pvd.example.org", Prefer))
	v, _ := tp.Get(Interface)
	assert.Equal(t, map[string]Preference{"en0": Require, "Cellular": Prohibit}, v)
	v, _ = tp.Get(PvD)
	assert.Equal(t, map[string]Preference{"pvd.example.org": Prefer}, v)

	// Get returns a copy.
	v.(map[string]Preference)["evil"] = Require
	v, _ = tp.Get(PvD)
	assert.NotContains(t, v, "evil")

	// NoPreference removes an entry; removing the last one unsets the property.
	require.NoError(t, tp.SetInterface("en0", NoPreference))
	require.NoError(t, tp.SetInterface("Cellular", NoPreference))
	assert.False(t, tp.IsSet(Interface))
	v, _ = tp.Get(Interface)
	assert.Empty(t, v)

	for _, tt := range []struct {
		name string
		pref Preference
	}{{"", Require}, {"en0", Preference(7)}} {
		err := tp.SetInterface(tt.name, tt.pref)
		assert.ErrorIs(t, err, ErrInvalidPropertyValue)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, Interface, pe.Property)
		assert.ErrorIs(t, tp.SetPvD(tt.name, tt.pref), ErrInvalidPropertyValue)
	}
}

func TestPropertiesClone(t *testing.T) {
	tp := NewTransportProperties(ReliableMessage)
	require.NoError(t, tp.SetInterface("en0", Require))
	require.NoError(t, tp.Set(ConnPriority, 3))
	c := tp.Clone()
	assert.Equal(t, tp, c)

	require.NoError(t, c.SetInterface("en1", Prefer))
	require.NoError(t, c.Set(ConnPriority, 9))
	require.NoError(t, c.Prohibit(Reliability))
	require.NoError(t, tp.Default(PreserveMsgBoundaries))

	v, _ := tp.Get(Interface)
	assert.Equal(t, map[string]Preference{"en0": Require}, v)
	v, _ = tp.Get(ConnPriority)
	assert.Equal(t, int64(3), v)
	assert.Equal(t, Require, tp.Preference(Reliability))
	assert.Equal(t, Require, c.Preference(PreserveMsgBoundaries))
	v, _ = c.Get(Interface)
	assert.Equal(t, map[string]Preference{"en0": Require, "en1": Prefer}, v)

	// ForRole copies too and keeps IsSet.
	l := tp.ForRole(true)
	require.NoError(t, l.Set(ConnPriority, 1))
	v, _ = tp.Get(ConnPriority)
	assert.Equal(t, int64(3), v)
	assert.False(t, l.IsSet(Multipath))
	assert.Equal(t, Avoid, l.Preference(UseTemporaryLocalAddress))
	require.NoError(t, tp.Set(Multipath, MultipathActive))
	v, _ = tp.ForRole(true).Get(Multipath)
	assert.Equal(t, MultipathActive, v, "explicit values beat role defaults")
}

func TestParseProperty(t *testing.T) {
	// Every canonical name, in every accepted case form.
	for _, p := range NewTransportProperties().Properties() {
		for _, name := range []string{string(p), strings.ToUpper(string(p)), strings.ToLower(string(p)),
			caseSeparated(string(p), '-'), caseSeparated(string(p), '_'), " " + string(p) + " "} {
			got, err := ParseProperty(name)
			require.NoError(t, err, name)
			assert.Equal(t, p, got, name)
		}
	}
	// The seed's names (checklist §8.2).
	seed := []struct {
		name string
		want Property
	}{
		{"reliability", Reliability},
		{"preserve-msg-boundaries", PreserveMsgBoundaries},
		{"per-msg-reliability", PerMsgReliability},
		{"preserve-order", PreserveOrder},
		{"zero-rtt-msg", ZeroRTTMsg},
		{"multistreaming", Multistreaming},
		{"per-msg-checksum-len-send", FullChecksumSend},
		{"per-msg-checksum-len-recv", FullChecksumRecv},
		{"congestion-control", CongestionControl},
		{"interface", Interface},
		{"pvd", PvD},
		{"local-address-preference", UseTemporaryLocalAddress},
		{"multipath", Multipath},
		{"direction", Direction},
		{"retransmit-notify", RetransmitNotify},
		{"soft-error-notify", SoftErrorNotify},
		{"conn-prio", ConnPriority},
		{"conn-timeout", ConnTimeout},
		{"conn-scheduler", ConnScheduler},
		{"conn-capacity-profile", ConnCapacityProfile},
		{"max-send-rate", MaxSendRate},
		{"max-recv-rate", MaxRecvRate},
		{"recv-checksum-len", RecvChecksumLen},
		{"retransmit-notify-threshold", RetransmitNotifyThreshold},
		{"singular-transmission-msg-max-len", SingularTransmissionMsgMaxLen},
		{"send-msg-max-len", SendMsgMaxLen},
		{"recv-msg-max-len", RecvMsgMaxLen},
		{"tcp.user-timeout-value", TCPUserTimeoutValue},
		{"tcp.user-timeout", TCPUserTimeoutEnabled},
		{"tcp.user-timeout-recv", TCPUserTimeoutChangeable},
		{"msg-lifetime", MsgLifetime},
		{"msg-prio", MsgPriority},
		{"msg-ordered", MsgOrdered},
		{"idempotent", SafelyReplayable},
		{"final", Final},
		{"msg-checksum-len", MsgChecksumLen},
		{"msg-reliable", MsgReliable},
		{"msg-capacity-profile", MsgCapacityProfile},
		{"singular-transmission", NoSegmentation},
		{"PRESERVE_MSG_BOUNDARIES", PreserveMsgBoundaries}, // the seed's Python constant
		{"Conn-Prio", ConnPriority},
		{"_GOTAPS.RETRANSMITNOTIFY", RetransmitNotify},
		{"TCP.USERTIMEOUTVALUE", TCPUserTimeoutValue},
	}
	for _, tt := range seed {
		got, err := ParseProperty(tt.name)
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, got, tt.name)
	}
	for _, name := range []string{"", "nonsense", "tcp-uto", "zero-rtt-msg-max-len", "ecn", "early-data",
		"receiving-final-messages", "max-send-rate / max-recv-rate", "tcp.retransmitNotify", "retransmitNotify"} {
		_, err := ParseProperty(name)
		assert.ErrorIs(t, err, ErrUnknownProperty, name)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "parse", pe.Op)
		assert.Equal(t, Property(name), pe.Property)
	}
}

func TestParsePropertyNamesUnambiguous(t *testing.T) {
	// No spelling of one property is a spelling of another.
	owner := map[string]Property{}
	for _, p := range NewTransportProperties().Properties() {
		for _, name := range []string{string(p), caseSeparated(string(p), '-'), caseSeparated(string(p), '_')} {
			n := strings.ToLower(name)
			if prev, ok := owner[n]; ok {
				assert.Equal(t, prev, p, "%q names %s and %s", n, prev, p)
			}
			owner[n] = p
		}
	}
	for alias, p := range seedAliases {
		if prev, ok := owner[alias]; ok {
			assert.Equal(t, prev, p, "alias %q", alias)
		}
		assert.Equal(t, alias, strings.ToLower(alias))
	}
}

func TestParseEnums(t *testing.T) {
	for _, v := range []Preference{Prohibit, Avoid, NoPreference, Prefer, Require} {
		got, err := ParsePreference(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	for _, v := range allSchedulers {
		got, err := ParseScheduler(strings.ToLower(v.String()))
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	for _, v := range allCapacityProfiles {
		got, err := ParseCapacityProfile(strings.ToUpper(v.String()))
		require.NoError(t, err)
		assert.Equal(t, v, got)
		d, ok := stacks.CapacityProfileDSCP(v.String())
		assert.True(t, ok, "every profile has a DSCP")
		assert.Equal(t, d, v.DSCP())
	}
	for _, v := range allMultipathModes {
		got, err := ParseMultipathMode(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	for _, v := range allMultipathPolicies {
		got, err := ParseMultipathPolicy(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	for _, v := range allDirections {
		got, err := ParseDirection(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}

	tests := []struct {
		in    string
		parse func(string) (any, error)
		want  any
	}{
		{"ignore", anyParseProp(ParsePreference), NoPreference},
		{"no-preference", anyParseProp(ParsePreference), NoPreference},
		{"REQUIRE", anyParseProp(ParsePreference), Require},
		{"wfq", anyParseProp(ParseScheduler), WeightedFairQueueing},
		{"first-come-first-served", anyParseProp(ParseScheduler), FCFS},
		{"round-robin-per-packet", anyParseProp(ParseScheduler), RoundRobinPerPacket},
		{"priority", anyParseProp(ParseScheduler), StrictPriority},
		{"Low Latency/Interactive", anyParseProp(ParseCapacityProfile), LowLatencyInteractive},
		{"LOW_LATENCY_NON_INTERACTIVE", anyParseProp(ParseCapacityProfile), LowLatencyNonInteractive},
		{"constant-rate-streaming", anyParseProp(ParseCapacityProfile), ConstantRateStreaming},
		{"capacity-seeking", anyParseProp(ParseCapacityProfile), CapacitySeeking},
		{"best-effort", anyParseProp(ParseCapacityProfile), CapacityDefault},
		{"DEFAULT", anyParseProp(ParseCapacityProfile), CapacityDefault},
		{"multipath-passive", anyParseProp(ParseMultipathMode), MultipathPassive},
		{"aggregate", anyParseProp(ParseMultipathPolicy), Aggregate},
		{"unidirectional-send", anyParseProp(ParseDirection), UnidirectionalSend},
		{"recv", anyParseProp(ParseDirection), UnidirectionalReceive},
	}
	for _, tt := range tests {
		got, err := tt.parse(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	for _, parse := range []func(string) (any, error){anyParseProp(ParsePreference), anyParseProp(ParseScheduler),
		anyParseProp(ParseCapacityProfile), anyParseProp(ParseMultipathMode), anyParseProp(ParseMultipathPolicy),
		anyParseProp(ParseDirection), anyParseProp(ParseProfile)} {
		for _, in := range []string{"", "bogus", "Scheduler(9)"} {
			_, err := parse(in)
			assert.ErrorIs(t, err, ErrInvalidPropertyValue, in)
		}
	}
}

func anyParseProp[T any](f func(string) (T, error)) func(string) (any, error) {
	return func(s string) (any, error) { return f(s) }
}

func TestPropertiesEnumStrings(t *testing.T) {
	tests := []struct {
		v    interface{ String() string }
		want string
	}{
		{Prohibit, "Prohibit"}, {Avoid, "Avoid"}, {NoPreference, "NoPreference"}, {Prefer, "Prefer"}, {Require, "Require"},
		{Preference(5), "Preference(5)"},
		{Disabled, "Disabled"}, {Unlimited, "Unlimited"}, {FullCoverage, "FullCoverage"},
		{NotApplicable, "NotApplicable"}, {Infinite, "Infinite"}, {Special(0), "Special(0)"},
		{WeightedFairQueueing, "WeightedFairQueueing"}, {FCFS, "FCFS"}, {RoundRobin, "RoundRobin"},
		{RoundRobinPerPacket, "RoundRobinPerPacket"}, {StrictPriority, "StrictPriority"},
		{FairCapacity, "FairCapacity"}, {Scheduler(6), "Scheduler(6)"},
		{CapacityDefault, "Default"}, {Scavenger, "Scavenger"}, {CapacitySeeking, "CapacitySeeking"},
		{LowLatencyNonInteractive, "LowLatencyNonInteractive"}, {ConstantRateStreaming, "ConstantRateStreaming"},
		{LowLatencyInteractive, "LowLatencyInteractive"}, {CapacityProfile(2), "CapacityProfile(2)"},
		{MultipathDisabled, "Disabled"}, {MultipathActive, "Active"}, {MultipathPassive, "Passive"},
		{MultipathMode(3), "MultipathMode(3)"},
		{Handover, "Handover"}, {Interactive, "Interactive"}, {Aggregate, "Aggregate"},
		{MultipathPolicyMode(3), "MultipathPolicyMode(3)"},
		{Bidirectional, "Bidirectional"}, {UnidirectionalSend, "UnidirectionalSend"},
		{UnidirectionalReceive, "UnidirectionalReceive"}, {CommunicationDirection(3), "CommunicationDirection(3)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.v.String())
	}
	// The seed's numbers.
	assert.Equal(t, []int8{-2, -1, 0, 1, 2}, []int8{int8(Prohibit), int8(Avoid), int8(NoPreference), int8(Prefer), int8(Require)})
	assert.Equal(t, []uint8{0, 1, 10, 18, 28, 36}, []uint8{uint8(CapacityDefault), uint8(Scavenger),
		uint8(CapacitySeeking), uint8(LowLatencyNonInteractive), uint8(ConstantRateStreaming), uint8(LowLatencyInteractive)})
	// and the DSCPs RFC 9622 §8.1.6 recommends for them
	assert.Equal(t, []uint8{0, 1, 10, 18, 26, 46}, []uint8{CapacityDefault.DSCP(), Scavenger.DSCP(),
		CapacitySeeking.DSCP(), LowLatencyNonInteractive.DSCP(), ConstantRateStreaming.DSCP(), LowLatencyInteractive.DSCP()})
}

func TestPropertiesValidate(t *testing.T) {
	tests := []struct {
		name   string
		listen bool
		setup  func(tp *TransportProperties)
		want   Property // "" = no conflict
	}{
		{"defaults initiate", false, func(*TransportProperties) {}, ""},
		{"defaults listen", true, func(*TransportProperties) {}, ""},
		{"prohibit reliability + require perMsgReliability", false, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(Reliability))
			mustProp(tp.Require(PerMsgReliability))
		}, PerMsgReliability},
		{"prohibit reliability + prefer perMsgReliability", false, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(Reliability))
			mustProp(tp.Prefer(PerMsgReliability))
		}, ""},
		{"msgReliable true + prohibit reliability", false, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(Reliability))
			mustProp(tp.Set(MsgReliable, true))
		}, MsgReliable},
		{"msgReliable false + require reliability + prohibit perMsgReliability", false, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(PerMsgReliability))
			mustProp(tp.Set(MsgReliable, false))
		}, MsgReliable},
		{"msgReliable false + require reliability", false, func(tp *TransportProperties) {
			mustProp(tp.Set(MsgReliable, false))
		}, ""},
		{"msgOrdered true + prohibit preserveOrder", true, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(PreserveOrder))
			mustProp(tp.Set(MsgOrdered, true))
		}, MsgOrdered},
		{"msgChecksumLen partial + require fullChecksumSend", false, func(tp *TransportProperties) {
			mustProp(tp.Set(MsgChecksumLen, 8))
		}, MsgChecksumLen},
		{"msgChecksumLen partial + avoid fullChecksumSend", false, func(tp *TransportProperties) {
			mustProp(tp.Set(MsgChecksumLen, 8))
			mustProp(tp.Avoid(FullChecksumSend))
		}, ""},
		{"recvChecksumLen partial + require fullChecksumRecv", true, func(tp *TransportProperties) {
			mustProp(tp.Set(RecvChecksumLen, 0))
		}, RecvChecksumLen},
		{"recvChecksumLen full + require fullChecksumRecv", true, func(tp *TransportProperties) {
			mustProp(tp.Set(RecvChecksumLen, FullCoverage))
		}, ""},
		{"require keepAlive + keepAliveTimeout Disabled", false, func(tp *TransportProperties) {
			mustProp(tp.Require(KeepAlive))
			mustProp(tp.Set(KeepAliveTimeout, Disabled))
		}, KeepAliveTimeout},
		{"require keepAlive, timeout unset", false, func(tp *TransportProperties) {
			mustProp(tp.Require(KeepAlive))
		}, ""},
		{"require keepAlive + keepAliveTimeout > connTimeout", false, func(tp *TransportProperties) {
			mustProp(tp.Require(KeepAlive))
			mustProp(tp.Set(KeepAliveTimeout, time.Minute))
			mustProp(tp.Set(ConnTimeout, time.Second))
		}, KeepAliveTimeout},
		{"require keepAlive + keepAliveTimeout < connTimeout", false, func(tp *TransportProperties) {
			mustProp(tp.Require(KeepAlive))
			mustProp(tp.Set(KeepAliveTimeout, time.Second))
			mustProp(tp.Set(ConnTimeout, time.Minute))
		}, ""},
		{"prohibit keepAlive + keepAliveTimeout", false, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(KeepAlive))
			mustProp(tp.Set(KeepAliveTimeout, time.Second))
		}, KeepAliveTimeout},
		{"prohibit retransmitNotify + threshold", true, func(tp *TransportProperties) {
			mustProp(tp.Prohibit(RetransmitNotify))
			mustProp(tp.Set(RetransmitNotifyThreshold, 3))
		}, RetransmitNotifyThreshold},
		{"avoid retransmitNotify + threshold", false, func(tp *TransportProperties) {
			mustProp(tp.Avoid(RetransmitNotify))
			mustProp(tp.Set(RetransmitNotifyThreshold, 3))
		}, ""},
		{"initiator reads first but only sends", false, func(tp *TransportProperties) {
			mustProp(tp.Require(ActiveReadBeforeSend))
			mustProp(tp.Set(Direction, UnidirectionalSend))
		}, ActiveReadBeforeSend},
		{"listener writes first but only receives", true, func(tp *TransportProperties) {
			mustProp(tp.Require(ActiveReadBeforeSend))
			mustProp(tp.Set(Direction, UnidirectionalReceive))
		}, ActiveReadBeforeSend},
		{"listener writes first and only sends", true, func(tp *TransportProperties) {
			mustProp(tp.Require(ActiveReadBeforeSend))
			mustProp(tp.Set(Direction, UnidirectionalSend))
		}, ""},
		{"initiator 0-RTT but only receives", false, func(tp *TransportProperties) {
			mustProp(tp.Require(ZeroRTTMsg))
			mustProp(tp.Set(Direction, UnidirectionalReceive))
		}, ZeroRTTMsg},
		{"min send rate above max", false, func(tp *TransportProperties) {
			mustProp(tp.Set(MinSendRate, 2000))
			mustProp(tp.Set(MaxSendRate, 1000))
		}, MinSendRate},
		{"min recv rate above max", true, func(tp *TransportProperties) {
			mustProp(tp.Set(MinRecvRate, 2000))
			mustProp(tp.Set(MaxRecvRate, 1999))
		}, MinRecvRate},
		{"min rate with unlimited max", false, func(tp *TransportProperties) {
			mustProp(tp.Set(MinRecvRate, 2000))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := NewTransportProperties()
			tt.setup(tp)
			err := tp.Validate(tt.listen)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrConflictingProperties)
			var pe *PropertyError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.want, pe.Property)
			assert.Equal(t, "validate", pe.Op)
			assert.True(t, strings.HasPrefix(err.Error(), "validate property "+string(tt.want)+": conflicting properties"), err.Error())
		})
	}
}

func mustProp(err error) {
	if err != nil {
		panic(err)
	}
}

func TestPropertyErrorFormat(t *testing.T) {
	err := NewTransportProperties().Set(ConnTimeout, -time.Second)
	assert.EqualError(t, err, "set property connTimeout: invalid property value -1s: want a time.Duration > 0 or Disabled")
	err = NewTransportProperties().Set(ConnPriority, "x")
	assert.EqualError(t, err, "set property connPriority: invalid property type string: want an integer >= 0")
	err = NewTransportProperties().Set(ConnState, 1)
	assert.EqualError(t, err, "set property connState: read-only property")
	pe := &PropertyError{Property: Final}
	assert.Equal(t, "set property final", pe.Error())
	assert.Nil(t, pe.Unwrap())
	assert.True(t, errors.Is(&PropertyError{Err: ErrUnknownProperty}, ErrUnknownProperty))
}

// The seed's names that stand for no single property fail to parse with
// an error saying where their meaning went.
func TestParsePropertySeedComposites(t *testing.T) {
	for name, want := range map[string]string{
		"tcp-uto":                       "tcp.userTimeoutValue",
		"max-send-rate / max-recv-rate": "maxSendRate",
		"zero-rtt-msg-max-len":          "removed",
		"ECN":                           "MessageContext.ECN",
		"early-data":                    "MessageContext.EarlyData",
		"receiving-final-messages":      "MessageContext.IsFinal",
	} {
		_, err := ParseProperty(name)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe, name)
		require.ErrorIs(t, err, ErrUnknownProperty, name)
		require.Contains(t, err.Error(), want, name)
	}
	_, err := ParseProperty("no-such-property")
	require.ErrorIs(t, err, ErrUnknownProperty)
	require.NotContains(t, err.Error(), "seed")
}
