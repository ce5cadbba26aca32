package taps

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/gotaps/gotaps/messages"
)

// convertTestProps returns a set of TransportProperties that together use
// every value kind.
func convertTestProps() map[string]*TransportProperties {
	custom := NewTransportProperties(ReliableMessage)
	mustProp(custom.SetInterface("en0", Require))
	mustProp(custom.SetInterface("Cellular", Avoid))
	mustProp(custom.SetPvD("pvd.example.org", Prefer))
	mustProp(custom.Set(Multipath, MultipathActive))
	mustProp(custom.Set(Direction, UnidirectionalSend))
	mustProp(custom.Set(ConnTimeout, 30*time.Second))
	mustProp(custom.Set(KeepAliveTimeout, 10*time.Second))
	mustProp(custom.Set(ConnScheduler, RoundRobin))
	mustProp(custom.Set(ConnCapacityProfile, ConstantRateStreaming))
	mustProp(custom.Set(MultipathPolicy, Interactive))
	mustProp(custom.Set(MaxSendRate, 1_000_000))
	mustProp(custom.Set(MinRecvRate, 1))
	mustProp(custom.Set(GroupConnLimit, 16))
	mustProp(custom.Set(RecvChecksumLen, FullCoverage))
	mustProp(custom.Set(ConnPriority, 0))
	mustProp(custom.Set(RetransmitNotifyThreshold, 3))
	mustProp(custom.Set(TCPUserTimeoutValue, time.Minute))
	mustProp(custom.Set(TCPUserTimeoutEnabled, true))
	mustProp(custom.Set(MsgLifetime, 2*time.Second))
	mustProp(custom.Set(MsgPriority, 7))
	mustProp(custom.Set(MsgOrdered, false))
	mustProp(custom.Set(MsgReliable, true))
	mustProp(custom.Set(MsgCapacityProfile, Scavenger))
	mustProp(custom.Set(NoSegmentation, true))
	mustProp(custom.Prohibit(UseTemporaryLocalAddress))
	mustProp(custom.Require(RetransmitNotify))

	lowChecksum := NewTransportProperties()
	mustProp(lowChecksum.Avoid(FullChecksumSend))
	mustProp(lowChecksum.Set(MsgChecksumLen, 0))
	mustProp(lowChecksum.Set(MsgLifetime, Infinite))

	return map[string]*TransportProperties{
		"defaults":                NewTransportProperties(),
		"nil":                     nil,
		"reliable-inorder-stream": NewTransportProperties(ReliableInorderStream),
		"reliable-message":        NewTransportProperties(ReliableMessage),
		"unreliable-datagram":     NewTransportProperties(UnreliableDatagram),
		"custom":                  custom,
		"low checksum":            lowChecksum,
	}
}

func TestConvertPropsRoundTrip(t *testing.T) {
	for name, tp := range convertTestProps() {
		for _, listen := range []bool{false, true} {
			m := propsToMessage(tp, listen)
			back, err := propsFromMessage(m)
			require.NoError(t, err, name)
			// Same effective values for this role, property by property.
			for _, p := range tp.Properties() {
				want, wantOK := tp.ForRole(listen).Get(p)
				got, gotOK := back.ForRole(listen).Get(p)
				assert.Equal(t, wantOK, gotOK, "%s %s", name, p)
				assert.Equal(t, want, got, "%s listen=%v %s", name, listen, p)
			}
			// message -> properties -> message is the identity.
			m2 := propsToMessage(back, listen)
			assert.True(t, proto.Equal(m, m2), "%s listen=%v:\n%v\n%v", name, listen, m, m2)
			// And through the wire format.
			b, err := proto.Marshal(m)
			require.NoError(t, err)
			var m3 messages.Properties
			require.NoError(t, proto.Unmarshal(b, &m3))
			back3, err := propsFromMessage(&m3)
			require.NoError(t, err)
			assert.True(t, proto.Equal(m, propsToMessage(back3, listen)), name)
		}
	}
}

func TestConvertPropsToMessage(t *testing.T) {
	pv := func(v any) *messages.PropertyValue { return encodeValue(v) }
	tests := []struct {
		name   string
		tp     *TransportProperties
		listen bool
		want   map[string]*messages.PropertyValue // nil value: must be absent
	}{
		{"initiate defaults", nil, false, map[string]*messages.PropertyValue{
			"reliability":                       {Kind: &messages.PropertyValue_Preference{Preference: 2}},
			"multistreaming":                    {Kind: &messages.PropertyValue_Preference{Preference: 1}},
			"useTemporaryLocalAddress":          {Kind: &messages.PropertyValue_Preference{Preference: 1}},
			"multipath":                         {Kind: &messages.PropertyValue_EnumValue{EnumValue: "Disabled"}},
			"direction":                         {Kind: &messages.PropertyValue_EnumValue{EnumValue: "Bidirectional"}},
			"interface":                         {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{Preferences: map[string]int32{}}}},
			"advertisesAltaddr":                 {Kind: &messages.PropertyValue_BoolValue{BoolValue: false}},
			"connTimeout":                       {Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_DISABLED}},
			"recvChecksumLen":                   {Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_FULL_COVERAGE}},
			"maxSendRate":                       {Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_UNLIMITED}},
			"connPriority":                      {Kind: &messages.PropertyValue_IntValue{IntValue: 100}},
			"connScheduler":                     {Kind: &messages.PropertyValue_EnumValue{EnumValue: "WeightedFairQueueing"}},
			"connCapacityProfile":               {Kind: &messages.PropertyValue_EnumValue{EnumValue: "Default"}},
			"multipathPolicy":                   {Kind: &messages.PropertyValue_EnumValue{EnumValue: "Handover"}},
			"tcp.userTimeoutValue":              {Kind: &messages.PropertyValue_DurationNs{DurationNs: int64(5 * time.Minute)}},
			"tcp.userTimeoutChangeable":         {Kind: &messages.PropertyValue_BoolValue{BoolValue: true}},
			"msgLifetime":                       {Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_INFINITE}},
			"_gotaps.retransmitNotifyThreshold": {Kind: &messages.PropertyValue_Special{Special: messages.Special_SPECIAL_DISABLED}},
			"msgOrdered":                        nil,
			"msgReliable":                       nil,
			"msgCapacityProfile":                nil,
			"connState":                         nil,
			"canSend":                           nil,
			"sendMsgMaxLen":                     nil,
		}},
		{"listen defaults", NewTransportProperties(), true, map[string]*messages.PropertyValue{
			"useTemporaryLocalAddress": pv(Avoid),
			"multipath":                pv(MultipathPassive),
		}},
		{"explicit values", func() *TransportProperties {
			tp := NewTransportProperties(UnreliableDatagram)
			mustProp(tp.Set(ConnTimeout, time.Second))
			mustProp(tp.Set(MsgOrdered, true))
			mustProp(tp.SetInterface("en0", Prohibit))
			return tp
		}(), true, map[string]*messages.PropertyValue{
			"reliability":               pv(Avoid),
			"safelyReplayable":          pv(true),
			"connTimeout":               {Kind: &messages.PropertyValue_DurationNs{DurationNs: int64(time.Second)}},
			"tcp.userTimeoutChangeable": pv(false),
			"msgOrdered":                pv(true),
			"interface":                 {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{Preferences: map[string]int32{"en0": -2}}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := propsToMessage(tt.tp, tt.listen)
			for k, want := range tt.want {
				got, ok := m.Values[k]
				if want == nil {
					assert.False(t, ok, "%s must be absent", k)
					continue
				}
				require.True(t, ok, k)
				assert.True(t, proto.Equal(want, got), "%s: want %v got %v", k, want, got)
			}
		})
	}
	// Every settable property with a value of its own is present.
	m := propsToMessage(nil, false)
	for _, p := range NewTransportProperties().Properties() {
		d := descOf(p)
		_, ok := m.Values[string(p)]
		assert.Equal(t, d.rule != defInherited, ok, "%s", p)
	}
}

func TestConvertPropsFromMessageErrors(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]*messages.PropertyValue
		want   error
	}{
		{"unknown name", map[string]*messages.PropertyValue{"bogus": {}}, ErrUnknownProperty},
		{"nil value", map[string]*messages.PropertyValue{"reliability": nil}, ErrInvalidPropertyType},
		{"empty oneof", map[string]*messages.PropertyValue{"reliability": {}}, ErrInvalidPropertyType},
		{"bool for preference", map[string]*messages.PropertyValue{"reliability": encodeValue(true)}, ErrInvalidPropertyType},
		{"preference out of range", map[string]*messages.PropertyValue{"reliability": {Kind: &messages.PropertyValue_Preference{Preference: 3}}}, ErrInvalidPropertyValue},
		{"preference beyond int8", map[string]*messages.PropertyValue{"reliability": {Kind: &messages.PropertyValue_Preference{Preference: 258}}}, ErrInvalidPropertyValue},
		{"int for bool", map[string]*messages.PropertyValue{"final": encodeValue(int64(1))}, ErrInvalidPropertyType},
		{"int for duration", map[string]*messages.PropertyValue{"connTimeout": encodeValue(int64(1))}, ErrInvalidPropertyType},
		{"negative duration", map[string]*messages.PropertyValue{"connTimeout": encodeValue(-time.Second)}, ErrInvalidPropertyValue},
		{"wrong special", map[string]*messages.PropertyValue{"connTimeout": encodeValue(Infinite)}, ErrInvalidPropertyValue},
		{"special none", map[string]*messages.PropertyValue{"connTimeout": {Kind: &messages.PropertyValue_Special{}}}, ErrInvalidPropertyValue},
		{"special out of enum", map[string]*messages.PropertyValue{"maxSendRate": {Kind: &messages.PropertyValue_Special{Special: 300}}}, ErrInvalidPropertyValue},
		{"special for priority", map[string]*messages.PropertyValue{"connPriority": encodeValue(Unlimited)}, ErrInvalidPropertyType},
		{"negative priority", map[string]*messages.PropertyValue{"msgPriority": encodeValue(int64(-1))}, ErrInvalidPropertyValue},
		{"zero rate", map[string]*messages.PropertyValue{"minSendRate": encodeValue(int64(0))}, ErrInvalidPropertyValue},
		{"duration for int", map[string]*messages.PropertyValue{"groupConnLimit": encodeValue(time.Second)}, ErrInvalidPropertyType},
		{"unknown enum", map[string]*messages.PropertyValue{"connScheduler": {Kind: &messages.PropertyValue_EnumValue{EnumValue: "Lottery"}}}, ErrInvalidPropertyValue},
		{"int for enum", map[string]*messages.PropertyValue{"connCapacityProfile": encodeValue(int64(36))}, ErrInvalidPropertyType},
		{"named prefs out of range", map[string]*messages.PropertyValue{"interface": {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{Preferences: map[string]int32{"en0": 1 << 20}}}}}, ErrInvalidPropertyValue},
		{"named prefs empty name", map[string]*messages.PropertyValue{"pvd": {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{Preferences: map[string]int32{"": 1}}}}}, ErrInvalidPropertyValue},
		{"preference for named prefs", map[string]*messages.PropertyValue{"interface": encodeValue(Require)}, ErrInvalidPropertyType},
		{"two spellings", map[string]*messages.PropertyValue{"connPriority": encodeValue(int64(1)), "conn-prio": encodeValue(int64(2))}, ErrConflictingProperties},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := propsFromMessage(&messages.Properties{Values: tt.values})
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, tp)
			var pe *PropertyError
			require.ErrorAs(t, err, &pe)
		})
	}
}

func TestConvertPropsFromMessageLenient(t *testing.T) {
	// nil and empty messages give the defaults.
	for _, m := range []*messages.Properties{nil, {}} {
		tp, err := propsFromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, NewTransportProperties(), tp)
	}
	// Other spellings, read-only values (ignored), named prefs with
	// NoPreference entries (dropped), values equal to defaults (unset).
	tp, err := propsFromMessage(&messages.Properties{Values: map[string]*messages.PropertyValue{
		"conn-prio":     encodeValue(int64(5)),
		"IDEMPOTENT":    encodeValue(true),
		"connState":     encodeValue(int64(2)),
		"canSend":       encodeValue(true),
		"interface":     {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{Preferences: map[string]int32{"en0": 0, "en1": 2}}}},
		"reliability":   encodeValue(Require),
		"connScheduler": {Kind: &messages.PropertyValue_EnumValue{EnumValue: "round-robin"}},
		"multipath":     encodeValue(MultipathDisabled),
		"msgLifetime":   encodeValue(Infinite),
	}})
	require.NoError(t, err)
	v, _ := tp.Get(ConnPriority)
	assert.Equal(t, int64(5), v)
	v, _ = tp.Get(SafelyReplayable)
	assert.Equal(t, true, v)
	v, _ = tp.Get(Interface)
	assert.Equal(t, map[string]Preference{"en1": Require}, v)
	v, _ = tp.Get(ConnScheduler)
	assert.Equal(t, RoundRobin, v)
	assert.False(t, tp.IsSet(Reliability))
	assert.False(t, tp.IsSet(MsgLifetime))
	assert.True(t, tp.IsSet(Multipath), "role-dependent values are kept as given")
	v, _ = tp.ForRole(true).Get(Multipath)
	assert.Equal(t, MultipathDisabled, v)
}

func TestConvertPropsReaders(t *testing.T) {
	tp := NewTransportProperties(UnreliableDatagram)
	mustProp(tp.Set(ConnTimeout, 3*time.Second))
	mustProp(tp.Set(MaxSendRate, 64000))
	mustProp(tp.Set(ConnScheduler, StrictPriority))
	mustProp(tp.Set(ConnCapacityProfile, LowLatencyInteractive))
	mustProp(tp.Set(MultipathPolicy, Aggregate))
	mustProp(tp.Set(Direction, UnidirectionalReceive))
	mustProp(tp.SetPvD("p", Avoid))
	m := propsToMessage(tp, true)
	empty := &messages.Properties{}

	tests := []struct {
		name      string
		got, want any
	}{
		{"prefOf set", prefOf(m, Reliability), Avoid},
		{"prefOf role", prefOf(m, UseTemporaryLocalAddress), Avoid},
		{"prefOf default", prefOf(empty, Multistreaming), Prefer},
		{"prefOf nil", prefOf(nil, Reliability), Require},
		{"prefOf non-preference", prefOf(m, ConnTimeout), NoPreference},
		{"multipathOf role", multipathOf(m), MultipathPassive},
		{"multipathOf default", multipathOf(empty), MultipathDisabled},
		{"schedulerOf", schedulerOf(m), StrictPriority},
		{"schedulerOf default", schedulerOf(empty), WeightedFairQueueing},
		{"capacityProfileOf conn", capacityProfileOf(m, ConnCapacityProfile), LowLatencyInteractive},
		{"capacityProfileOf msg inherits", capacityProfileOf(m, MsgCapacityProfile), LowLatencyInteractive},
		{"capacityProfileOf default", capacityProfileOf(empty, MsgCapacityProfile), CapacityDefault},
		{"multipathPolicyOf", multipathPolicyOf(m), Aggregate},
		{"directionOf", directionOf(m), UnidirectionalReceive},
		{"directionOf default", directionOf(empty), Bidirectional},
		{"namedPrefsOf", namedPrefsOf(m, PvD), map[string]Preference{"p": Avoid}},
		{"namedPrefsOf empty", namedPrefsOf(empty, Interface), map[string]Preference{}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got, tt.name)
	}

	b, ok := boolOf(m, SafelyReplayable)
	assert.True(t, ok)
	assert.True(t, b)
	b, ok = boolOf(empty, TCPUserTimeoutChangeable)
	assert.False(t, ok)
	assert.True(t, b, "default")
	_, ok = boolOf(m, MsgOrdered)
	assert.False(t, ok, "inherited, absent")

	n, s := intOf(m, MaxSendRate)
	assert.Equal(t, int64(64000), n)
	assert.Zero(t, s)
	n, s = intOf(m, MaxRecvRate)
	assert.Zero(t, n)
	assert.Equal(t, Unlimited, s)
	n, s = intOf(empty, ConnPriority)
	assert.Equal(t, int64(100), n)
	assert.Zero(t, s)

	d, s := durationOf(m, ConnTimeout)
	assert.Equal(t, 3*time.Second, d)
	assert.Zero(t, s)
	d, s = durationOf(m, KeepAliveTimeout)
	assert.Zero(t, d)
	assert.Equal(t, Disabled, s)
	d, _ = durationOf(empty, TCPUserTimeoutValue)
	assert.Equal(t, 5*time.Minute, d)
	_, s = durationOf(empty, MsgLifetime)
	assert.Equal(t, Infinite, s)

	e, ok := enumOf(m, ConnScheduler)
	assert.True(t, ok)
	assert.Equal(t, "StrictPriority", e)
	_, ok = enumOf(empty, ConnScheduler)
	assert.False(t, ok)
}

// FuzzPropertiesRoundTrip decodes arbitrary bytes as a messages.Properties.
// Whatever propsFromMessage accepts must convert back to a message that
// converts to the same properties again, for both roles, and nothing may
// panic.
func FuzzPropertiesRoundTrip(f *testing.F) {
	for _, tp := range convertTestProps() {
		for _, listen := range []bool{false, true} {
			b, err := proto.Marshal(propsToMessage(tp, listen))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	one, _ := proto.Marshal(&messages.Properties{Values: map[string]*messages.PropertyValue{
		"conn-prio":   encodeValue(int64(math.MaxInt64)),
		"msgLifetime": {Kind: &messages.PropertyValue_DurationNs{DurationNs: math.MinInt64}},
	}})
	f.Add(one)

	f.Fuzz(func(t *testing.T, data []byte) {
		var m messages.Properties
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		tp, err := propsFromMessage(&m)
		if err != nil {
			return
		}
		for _, listen := range []bool{false, true} {
			_ = tp.Validate(listen)
			m2 := propsToMessage(tp, listen)
			tp2, err := propsFromMessage(m2)
			if err != nil {
				t.Fatalf("re-decoding our own message failed: %v\n%v", err, m2)
			}
			m3 := propsToMessage(tp2, listen)
			if !proto.Equal(m2, m3) {
				t.Fatalf("round trip changed the message:\n%v\n%v", m2, m3)
			}
			for _, p := range tp.Properties() {
				a, _ := tp.ForRole(listen).Get(p)
				b, _ := tp2.ForRole(listen).Get(p)
				if !assert.ObjectsAreEqual(a, b) {
					t.Fatalf("%s: %v != %v", p, a, b)
				}
			}
			if _, err := NewMessageContext().resolve(tp); err != nil {
				t.Fatal(err)
			}
		}
	})
}
