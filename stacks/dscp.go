package stacks

// capacityDSCP is the one table of the DSCP RFC 9622 §8.1.6 recommends per
// capacity profile (by the profile's RFC name, as taps spells it).
var capacityDSCP = map[string]uint8{
	"Default":                  0,  // DF
	"Scavenger":                1,  // LE, RFC 8622
	"CapacitySeeking":          10, // AF11
	"LowLatencyNonInteractive": 18, // AF21
	"ConstantRateStreaming":    26, // AF31
	"LowLatencyInteractive":    46, // EF
}

// CapacityProfileDSCP returns the DSCP (the 6-bit codepoint, not the TOS
// byte) recommended for the named capacity profile; ok is false for an
// unknown name.
func CapacityProfileDSCP(name string) (dscp uint8, ok bool) {
	dscp, ok = capacityDSCP[name]
	return dscp, ok
}
