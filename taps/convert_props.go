package taps

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gotaps/gotaps/messages"
)

// This file converts TransportProperties to and from messages.Properties,
// the property vocabulary of the actor layer. A messages.Properties maps
// canonical RFC 9622 names to values:
//
//	Preference             preference (-2..2)
//	bool                   bool_value
//	integer                int_value
//	time.Duration          duration_ns
//	Special                special
//	enum types             enum_value (their String form)
//	interface, pvd         named_preferences
//
// Read-only properties never appear. msgOrdered, msgReliable and
// msgCapacityProfile appear only when set explicitly: absence means "as
// the Connection reads back preserveOrder / reliability /
// connCapacityProfile".

// encodeValue converts a canonical property value (see propDesc.check).
func encodeValue(v any) *messages.PropertyValue {
	switch x := v.(type) {
	case Preference:
		return &messages.PropertyValue{Kind: &messages.PropertyValue_Preference{Preference: int32(x)}}
	case Special:
		return &messages.PropertyValue{Kind: &messages.PropertyValue_Special{Special: messages.Special(x)}}
	case bool:
		return &messages.PropertyValue{Kind: &messages.PropertyValue_BoolValue{BoolValue: x}}
	case int64:
		return &messages.PropertyValue{Kind: &messages.PropertyValue_IntValue{IntValue: x}}
	case time.Duration:
		return &messages.PropertyValue{Kind: &messages.PropertyValue_DurationNs{DurationNs: int64(x)}}
	case map[string]Preference:
		m := make(map[string]int32, len(x))
		for k, p := range x {
			m[k] = int32(p)
		}
		return &messages.PropertyValue{Kind: &messages.PropertyValue_NamedPreferences{
			NamedPreferences: &messages.NamedPreferences{Preferences: m}}}
	case enumValue:
		return &messages.PropertyValue{Kind: &messages.PropertyValue_EnumValue{EnumValue: x.String()}}
	}
	panic(fmt.Sprintf("taps: no encoding for property value %T", v)) // unreachable: values are checked on Set
}

// propsToMessage returns the effective value of every settable property of
// tp for a Listener (listen) or an initiated Connection: explicit values,
// else defaults, with the role-dependent defaults of multipath and
// useTemporaryLocalAddress resolved. tp may be nil (all defaults).
func propsToMessage(tp *TransportProperties, listen bool) *messages.Properties {
	return propsToMessageRole(tp, roleOf(listen))
}

func propsToMessageRole(tp *TransportProperties, r role) *messages.Properties {
	out := &messages.Properties{Values: make(map[string]*messages.PropertyValue, len(propTable))}
	for i := range propTable {
		d := &propTable[i]
		var v any
		if d.rule == defInherited {
			var ok bool
			if v, ok = tp.lookup(d.name); !ok {
				continue // read-only, or inherits from the Connection
			}
		} else {
			v, _ = tp.effective(d, r)
		}
		out.Values[string(d.name)] = encodeValue(v)
	}
	return out
}

// decodeValue converts one messages.PropertyValue into the Go value Set
// takes for d, checking the oneof kind; ranges are checked by d.check.
func decodeValue(d *propDesc, pv *messages.PropertyValue) (any, error) {
	const op = "decode"
	kind := pv.GetKind()
	switch d.vt {
	case vtPreference:
		if k, ok := kind.(*messages.PropertyValue_Preference); ok {
			if k.Preference < math.MinInt8 || k.Preference > math.MaxInt8 {
				return nil, d.valueErr(op, k.Preference)
			}
			return Preference(k.Preference), nil
		}
	case vtBool:
		if k, ok := kind.(*messages.PropertyValue_BoolValue); ok {
			return k.BoolValue, nil
		}
	case vtDuration:
		switch k := kind.(type) {
		case *messages.PropertyValue_DurationNs:
			return time.Duration(k.DurationNs), nil
		case *messages.PropertyValue_Special:
			return decodeSpecial(d, k.Special)
		}
	case vtInt:
		switch k := kind.(type) {
		case *messages.PropertyValue_IntValue:
			return k.IntValue, nil
		case *messages.PropertyValue_Special:
			return decodeSpecial(d, k.Special)
		}
	case vtEnum:
		if k, ok := kind.(*messages.PropertyValue_EnumValue); ok {
			e, err := d.enum.parse(k.EnumValue)
			if err != nil {
				return nil, &PropertyError{Op: op, Property: d.name, Value: k.EnumValue, Err: err}
			}
			return e, nil
		}
	case vtNamedPreferences:
		if k, ok := kind.(*messages.PropertyValue_NamedPreferences); ok {
			m := make(map[string]Preference, len(k.NamedPreferences.GetPreferences()))
			for name, p := range k.NamedPreferences.GetPreferences() {
				if p < math.MinInt8 || p > math.MaxInt8 {
					return nil, d.valueErr(op, p)
				}
				m[name] = Preference(p)
			}
			return m, nil
		}
	}
	return nil, &PropertyError{Op: op, Property: d.name, Value: kind,
		Err: fmt.Errorf("%w %T: want %s", ErrInvalidPropertyType, kind, d.want())}
}

func decodeSpecial(d *propDesc, s messages.Special) (any, error) {
	if s <= messages.Special_SPECIAL_NONE || s > messages.Special_SPECIAL_INFINITE {
		return nil, d.valueErr("decode", s)
	}
	return Special(s), nil
}

// propsFromMessage is the inverse of propsToMessage. Names may be spelled
// as ParseProperty accepts; two names for one property, unknown names, wrong
// value kinds and out-of-range values are errors ([*PropertyError]).
// Read-only properties are ignored. Values equal to a fixed default are
// left unset; role-dependent ones are set as given. m may be nil.
func propsFromMessage(m *messages.Properties) (*TransportProperties, error) {
	tp := NewTransportProperties()
	vals := m.GetValues()
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	slices.Sort(names) // deterministic error reporting
	seen := make(map[Property]string, len(names))
	for _, name := range names {
		d := descOf(Property(name))
		if d == nil {
			return nil, &PropertyError{Op: "decode", Property: Property(name), Err: ErrUnknownProperty}
		}
		if prev, dup := seen[d.name]; dup {
			return nil, &PropertyError{Op: "decode", Property: d.name,
				Err: fmt.Errorf("%w: both %q and %q name it", ErrConflictingProperties, prev, name)}
		}
		seen[d.name] = name
		if d.vt == vtReadOnly {
			continue
		}
		v, err := decodeValue(d, vals[name])
		if err != nil {
			return nil, err
		}
		cv, err := d.check("decode", v)
		if err != nil {
			return nil, err
		}
		if d.isFixedDefault(cv) {
			continue
		}
		tp.store(d.name, cv)
	}
	return tp, nil
}

// The helpers below read one property out of a messages.Properties, as
// the actor layer does with its own copy of them. Absent or malformed
// values give the default (the Initiate default for role-dependent ones).

func propValueOf(m *messages.Properties, p Property) *messages.PropertyValue {
	return m.GetValues()[string(p)]
}

// prefOf returns the preference of p, or its default.
func prefOf(m *messages.Properties, p Property) Preference {
	if k, ok := propValueOf(m, p).GetKind().(*messages.PropertyValue_Preference); ok &&
		k.Preference >= int32(Prohibit) && k.Preference <= int32(Require) {
		return Preference(k.Preference)
	}
	return (*TransportProperties)(nil).Preference(p)
}

// boolOf returns the Boolean p; ok is false when it is absent.
func boolOf(m *messages.Properties, p Property) (v, ok bool) {
	if k, isBool := propValueOf(m, p).GetKind().(*messages.PropertyValue_BoolValue); isBool {
		return k.BoolValue, true
	}
	if d := descOf(p); d != nil && d.rule == defFixed {
		b, _ := d.def.(bool)
		return b, false
	}
	return false, false
}

// intOf returns the integer p, or the Special it holds (n is then 0).
func intOf(m *messages.Properties, p Property) (n int64, s Special) {
	switch k := propValueOf(m, p).GetKind().(type) {
	case *messages.PropertyValue_IntValue:
		return k.IntValue, 0
	case *messages.PropertyValue_Special:
		return 0, Special(k.Special)
	}
	return splitNumber(p)
}

// durationOf returns the duration p, or the Special it holds (d is then 0).
func durationOf(m *messages.Properties, p Property) (d time.Duration, s Special) {
	switch k := propValueOf(m, p).GetKind().(type) {
	case *messages.PropertyValue_DurationNs:
		return time.Duration(k.DurationNs), 0
	case *messages.PropertyValue_Special:
		return 0, Special(k.Special)
	}
	n, s := splitNumber(p)
	return time.Duration(n), s
}

// splitNumber returns the default of a numeric property as (number, Special).
func splitNumber(p Property) (int64, Special) {
	v, _ := (*TransportProperties)(nil).Get(p)
	switch x := v.(type) {
	case int64:
		return x, 0
	case time.Duration:
		return int64(x), 0
	case Special:
		return 0, x
	}
	return 0, 0
}

// enumOf returns the enum value of p (its String form); ok is false when
// absent.
func enumOf(m *messages.Properties, p Property) (s string, ok bool) {
	if k, isEnum := propValueOf(m, p).GetKind().(*messages.PropertyValue_EnumValue); isEnum {
		return k.EnumValue, true
	}
	return "", false
}

// enumValueOf parses the enum p with parse, falling back to its default.
func enumValueOf[T any](m *messages.Properties, p Property, parse func(string) (T, error)) T {
	if s, ok := enumOf(m, p); ok {
		if v, err := parse(s); err == nil {
			return v
		}
	}
	v, _ := (*TransportProperties)(nil).Get(p)
	t, _ := v.(T)
	return t
}

func schedulerOf(m *messages.Properties) Scheduler {
	return enumValueOf(m, ConnScheduler, ParseScheduler)
}

func capacityProfileOf(m *messages.Properties, p Property) CapacityProfile {
	if p == MsgCapacityProfile {
		if _, ok := enumOf(m, p); !ok {
			p = ConnCapacityProfile
		}
	}
	return enumValueOf(m, p, ParseCapacityProfile)
}

func multipathOf(m *messages.Properties) MultipathMode {
	return enumValueOf(m, Multipath, ParseMultipathMode)
}

func multipathPolicyOf(m *messages.Properties) MultipathPolicyMode {
	return enumValueOf(m, MultipathPolicy, ParseMultipathPolicy)
}

func directionOf(m *messages.Properties) CommunicationDirection {
	return enumValueOf(m, Direction, ParseDirection)
}

// namedPrefsOf returns the (name, preference) set of interface or pvd.
func namedPrefsOf(m *messages.Properties, p Property) map[string]Preference {
	out := make(map[string]Preference)
	if k, ok := propValueOf(m, p).GetKind().(*messages.PropertyValue_NamedPreferences); ok {
		for name, pr := range k.NamedPreferences.GetPreferences() {
			if pr >= int32(Prohibit) && pr <= int32(Require) && pr != 0 {
				out[name] = Preference(pr)
			}
		}
	}
	return out
}
