package taps

import (
	"errors"
	"fmt"
	"github.com/gotaps/gotaps/stacks"
	"maps"
	"math"
	"strings"
	"time"
)

// Errors about properties. They are wrapped in a [*PropertyError]; test for
// them with [errors.Is].
var (
	// ErrUnknownProperty: the name is neither an RFC 9622 property name, a
	// gotaps implementation-specific name ("_gotaps.") nor a seed alias.
	ErrUnknownProperty = errors.New("unknown property")
	// ErrInvalidPropertyType: the value has the wrong Go type for the
	// property (an int for a time.Duration property, a Preference for a
	// Boolean property, a Special for a property that takes none, such as
	// connPriority, ...).
	ErrInvalidPropertyType = errors.New("invalid property type")
	// ErrInvalidPropertyValue: the value has the right type but is out of
	// range (a negative priority, a zero timeout, an undefined enum value,
	// a Special other than the one the property takes: Infinite for
	// connTimeout, which takes Disabled).
	ErrInvalidPropertyValue = errors.New("invalid property value")
	// ErrReadOnlyProperty: the property (connState, canSend, canReceive,
	// singularTransmissionMsgMaxLen, sendMsgMaxLen, recvMsgMaxLen) can be
	// read from a Connection but never set.
	ErrReadOnlyProperty = errors.New("read-only property")
	// ErrConflictingProperties: two properties contradict each other, so no
	// protocol stack can satisfy them (RFC 9623 §3.1), for example Prohibit
	// reliability together with Require perMsgReliability.
	ErrConflictingProperties = errors.New("conflicting properties")
)

// PropertyError reports a failed operation on one property. Err wraps one
// of [ErrUnknownProperty], [ErrInvalidPropertyType],
// [ErrInvalidPropertyValue], [ErrReadOnlyProperty] or
// [ErrConflictingProperties].
type PropertyError struct {
	// Op is the operation: "set", "parse", "validate" or "decode". Empty
	// means "set".
	Op string
	// Property is the property concerned (its canonical name when known).
	Property Property
	// Value is the offending value, or nil.
	Value any
	// Err is the cause.
	Err error
}

// Error returns "<op> property <name>: <cause>", for example
// "set property connTimeout: invalid property value -1s: want a
// time.Duration > 0 or Disabled".
func (e *PropertyError) Error() string {
	op := e.Op
	if op == "" {
		op = "set"
	}
	s := op + " property " + string(e.Property)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *PropertyError) Unwrap() error { return e.Err }

// Preference is a preference level of a Selection Property (RFC 9622 §6.2).
// The values are the seed's PreferenceLevel numbers.
type Preference int8

// Preference levels, from the strongest "no" to the strongest "yes".
const (
	// Prohibit: only protocols and paths that do not provide the feature.
	Prohibit Preference = -2
	// Avoid: favour protocols and paths that do not provide the feature.
	Avoid Preference = -1
	// NoPreference: no effect on selection (the seed's IGNORE).
	NoPreference Preference = 0
	// Prefer: favour protocols and paths that provide the feature.
	Prefer Preference = 1
	// Require: only protocols and paths that provide the feature.
	Require Preference = 2
)

// String returns "Prohibit", "Avoid", "NoPreference", "Prefer" or "Require".
func (p Preference) String() string {
	switch p {
	case Prohibit:
		return "Prohibit"
	case Avoid:
		return "Avoid"
	case NoPreference:
		return "NoPreference"
	case Prefer:
		return "Prefer"
	case Require:
		return "Require"
	}
	return fmt.Sprintf("Preference(%d)", int8(p))
}

func (p Preference) valid() bool { return p >= Prohibit && p <= Require }

// ParsePreference parses a preference level, case-insensitively:
// "Require", "prefer", "no-preference", "ignore" (the seed's name for
// NoPreference), "AVOID", ...
func ParsePreference(s string) (Preference, error) {
	return parseNamed("preference", s, []Preference{Prohibit, Avoid, NoPreference, Prefer, Require},
		map[string]Preference{"ignore": NoPreference, "none": NoPreference})
}

// Special is a non-numeric value of a numeric property: the RFC 9622 union
// values that the seed wrote as -1. Each property accepts at most one of
// them (see the property's documentation).
type Special uint8

// Special values. They start at 1 so that the zero value is no Special.
const (
	// Disabled: connTimeout, keepAliveTimeout,
	// _gotaps.retransmitNotifyThreshold.
	Disabled Special = iota + 1
	// Unlimited: minSendRate, minRecvRate, maxSendRate, maxRecvRate,
	// groupConnLimit.
	Unlimited
	// FullCoverage: recvChecksumLen, msgChecksumLen.
	FullCoverage
	// NotApplicable: singularTransmissionMsgMaxLen (read-only).
	NotApplicable
	// Infinite: msgLifetime.
	Infinite
)

// String returns "Disabled", "Unlimited", "FullCoverage", "NotApplicable"
// or "Infinite".
func (s Special) String() string {
	switch s {
	case Disabled:
		return "Disabled"
	case Unlimited:
		return "Unlimited"
	case FullCoverage:
		return "FullCoverage"
	case NotApplicable:
		return "NotApplicable"
	case Infinite:
		return "Infinite"
	}
	return fmt.Sprintf("Special(%d)", uint8(s))
}

// Scheduler is the connScheduler value: how a Connection Group shares
// capacity among its members (RFC 8260 §3). The zero value is the default,
// WeightedFairQueueing.
type Scheduler uint8

// Schedulers of RFC 8260 §3.
const (
	// WeightedFairQueueing (RFC 8260 §3.6) is the default.
	WeightedFairQueueing Scheduler = iota
	// FCFS is First-Come, First-Served (RFC 8260 §3.1).
	FCFS
	// RoundRobin (RFC 8260 §3.2).
	RoundRobin
	// RoundRobinPerPacket (RFC 8260 §3.3).
	RoundRobinPerPacket
	// StrictPriority is priority-based scheduling (RFC 8260 §3.4).
	StrictPriority
	// FairCapacity (RFC 8260 §3.5).
	FairCapacity
)

var allSchedulers = []Scheduler{WeightedFairQueueing, FCFS, RoundRobin, RoundRobinPerPacket, StrictPriority, FairCapacity}

// String returns the Go name of the scheduler ("WeightedFairQueueing",
// "FCFS", ...).
func (s Scheduler) String() string {
	switch s {
	case WeightedFairQueueing:
		return "WeightedFairQueueing"
	case FCFS:
		return "FCFS"
	case RoundRobin:
		return "RoundRobin"
	case RoundRobinPerPacket:
		return "RoundRobinPerPacket"
	case StrictPriority:
		return "StrictPriority"
	case FairCapacity:
		return "FairCapacity"
	}
	return fmt.Sprintf("Scheduler(%d)", uint8(s))
}

func (s Scheduler) valid() bool { return s <= FairCapacity }

// ParseScheduler parses a scheduler name case-insensitively: the String
// form, kebab or snake case, or the short names "wfq", "first-come-first-served",
// "rr", "priority", "priority-based".
func ParseScheduler(s string) (Scheduler, error) {
	return parseNamed("scheduler", s, allSchedulers, map[string]Scheduler{
		"wfq": WeightedFairQueueing, "firstcomefirstserved": FCFS, "rr": RoundRobin,
		"rrpkt": RoundRobinPerPacket, "priority": StrictPriority, "prioritybased": StrictPriority,
		"fc": FairCapacity,
	})
}

// CapacityProfile is the connCapacityProfile / msgCapacityProfile value
// (RFC 9622 §8.1.6); the zero value is CapacityDefault. Its numeric values
// are the seed's numbers for the profiles, the DSCPs the seed marked
// packets with; gotaps marks them with the DSCP RFC 9622 recommends
// ([CapacityProfile.DSCP], named in each constant's comment), which differs
// from that number for ConstantRateStreaming and LowLatencyInteractive.
type CapacityProfile uint8

// Capacity profiles, valued by the seed's numbers.
const (
	// CapacityDefault: no information about the expected capacity (DF,
	// DSCP 0).
	CapacityDefault CapacityProfile = 0
	// Scavenger: non-interactive, no urgency; scavenger congestion control
	// (LE, DSCP 1, RFC 8622).
	Scavenger CapacityProfile = 1
	// CapacitySeeking: send at the maximum rate over a long period (AF11,
	// DSCP 10).
	CapacitySeeking CapacityProfile = 10
	// LowLatencyNonInteractive: loss preferred to latency, not interactive
	// (AF21, DSCP 18).
	LowLatencyNonInteractive CapacityProfile = 18
	// ConstantRateStreaming: constant rate with minimal delay and jitter
	// (AF31, DSCP 26; the seed's number, 28, is AF32).
	ConstantRateStreaming CapacityProfile = 28
	// LowLatencyInteractive: interactive, loss preferred to latency (EF,
	// DSCP 46; the seed's number, 36, is AF42).
	LowLatencyInteractive CapacityProfile = 36
)

var allCapacityProfiles = []CapacityProfile{CapacityDefault, Scavenger, CapacitySeeking,
	LowLatencyNonInteractive, ConstantRateStreaming, LowLatencyInteractive}

// String returns "Default", "Scavenger", "CapacitySeeking",
// "LowLatencyNonInteractive", "ConstantRateStreaming" or
// "LowLatencyInteractive".
func (c CapacityProfile) String() string {
	switch c {
	case CapacityDefault:
		return "Default"
	case Scavenger:
		return "Scavenger"
	case CapacitySeeking:
		return "CapacitySeeking"
	case LowLatencyNonInteractive:
		return "LowLatencyNonInteractive"
	case ConstantRateStreaming:
		return "ConstantRateStreaming"
	case LowLatencyInteractive:
		return "LowLatencyInteractive"
	}
	return fmt.Sprintf("CapacityProfile(%d)", uint8(c))
}

// DSCP returns the Differentiated Services codepoint RFC 9622 §8.1.6
// recommends for the profile (the 6-bit value, not the TOS byte): DF 0, LE 1,
// AF11 10, AF21 18, AF31 26, EF 46. The profile's own number (uint8(c)) is
// the seed's value, which is not always that codepoint.
func (c CapacityProfile) DSCP() uint8 {
	d, _ := stacks.CapacityProfileDSCP(c.String())
	return d
}

func (c CapacityProfile) valid() bool {
	switch c {
	case CapacityDefault, Scavenger, CapacitySeeking, LowLatencyNonInteractive, ConstantRateStreaming, LowLatencyInteractive:
		return true
	}
	return false
}

// ParseCapacityProfile parses a profile name case-insensitively: the String
// form, "capacity-default", "best-effort", the RFC's "Low Latency/Interactive",
// or the seed's constant names ("LOW_LATENCY_INTERACTIVE").
func ParseCapacityProfile(s string) (CapacityProfile, error) {
	return parseNamed("capacity profile", s, allCapacityProfiles, map[string]CapacityProfile{
		"capacitydefault": CapacityDefault, "besteffort": CapacityDefault,
	})
}

// MultipathMode is the multipath Selection Property value (RFC 9622
// §6.2.14). Its default depends on the role: MultipathDisabled for
// Initiate and Rendezvous, MultipathPassive for Listen.
type MultipathMode uint8

// Multipath modes.
const (
	// MultipathDisabled: do not use multipath (and do not migrate).
	MultipathDisabled MultipathMode = iota
	// MultipathActive: actively use several paths (open subflows).
	MultipathActive
	// MultipathPassive: accept multipath when the peer asks for it.
	MultipathPassive
)

var allMultipathModes = []MultipathMode{MultipathDisabled, MultipathActive, MultipathPassive}

// String returns "Disabled", "Active" or "Passive".
func (m MultipathMode) String() string {
	switch m {
	case MultipathDisabled:
		return "Disabled"
	case MultipathActive:
		return "Active"
	case MultipathPassive:
		return "Passive"
	}
	return fmt.Sprintf("MultipathMode(%d)", uint8(m))
}

func (m MultipathMode) valid() bool { return m <= MultipathPassive }

// ParseMultipathMode parses "Disabled", "Active" or "Passive"
// case-insensitively (also with a "multipath-" prefix).
func ParseMultipathMode(s string) (MultipathMode, error) {
	return parseNamed("multipath mode", s, allMultipathModes, map[string]MultipathMode{
		"multipathdisabled": MultipathDisabled, "multipathactive": MultipathActive, "multipathpassive": MultipathPassive,
	})
}

// MultipathPolicyMode is the multipathPolicy Connection Property value
// (RFC 9622 §8.1.7); it only matters when multipath is not Disabled. The
// zero value is the default, Handover, the only one Linux can honour per
// connection (see [MultipathPolicy]). (The type cannot be called
// MultipathPolicy: that is the property's name.)
type MultipathPolicyMode uint8

// Multipath policies.
const (
	// Handover: one path at a time; move to another when it fails (default).
	Handover MultipathPolicyMode = iota
	// Interactive: minimise latency, using several paths if that helps.
	Interactive
	// Aggregate: use all paths for the most capacity.
	Aggregate
)

var allMultipathPolicies = []MultipathPolicyMode{Handover, Interactive, Aggregate}

// String returns "Handover", "Interactive" or "Aggregate".
func (m MultipathPolicyMode) String() string {
	switch m {
	case Handover:
		return "Handover"
	case Interactive:
		return "Interactive"
	case Aggregate:
		return "Aggregate"
	}
	return fmt.Sprintf("MultipathPolicyMode(%d)", uint8(m))
}

func (m MultipathPolicyMode) valid() bool { return m <= Aggregate }

// ParseMultipathPolicy parses "Handover", "Interactive" or "Aggregate"
// case-insensitively.
func ParseMultipathPolicy(s string) (MultipathPolicyMode, error) {
	return parseNamed("multipath policy", s, allMultipathPolicies, nil)
}

// CommunicationDirection is the direction Selection Property value (RFC
// 9622 §6.2.16). The zero value is the default, Bidirectional. (The type
// cannot be called Direction: that is the property's name.)
type CommunicationDirection uint8

// Communication directions.
const (
	// Bidirectional: both sides send and receive (default).
	Bidirectional CommunicationDirection = iota
	// UnidirectionalSend: this side only sends.
	UnidirectionalSend
	// UnidirectionalReceive: this side only receives.
	UnidirectionalReceive
)

var allDirections = []CommunicationDirection{Bidirectional, UnidirectionalSend, UnidirectionalReceive}

// String returns "Bidirectional", "UnidirectionalSend" or
// "UnidirectionalReceive".
func (d CommunicationDirection) String() string {
	switch d {
	case Bidirectional:
		return "Bidirectional"
	case UnidirectionalSend:
		return "UnidirectionalSend"
	case UnidirectionalReceive:
		return "UnidirectionalReceive"
	}
	return fmt.Sprintf("CommunicationDirection(%d)", uint8(d))
}

func (d CommunicationDirection) valid() bool { return d <= UnidirectionalReceive }

// ParseDirection parses "Bidirectional", "UnidirectionalSend" (or
// "unidirectional-send", "send") and "UnidirectionalReceive" (or "recv",
// "receive") case-insensitively.
func ParseDirection(s string) (CommunicationDirection, error) {
	return parseNamed("direction", s, allDirections, map[string]CommunicationDirection{
		"send": UnidirectionalSend, "receive": UnidirectionalReceive, "recv": UnidirectionalReceive,
		"unidirectionalrecv": UnidirectionalReceive,
	})
}

// Profile is a preconfigured set of properties (RFC 9622 App. B.2): there are
// exactly three.
type Profile uint8

// Property profiles.
const (
	// ReliableInorderStream (TCP-like): Require reliability, preserveOrder
	// and congestionControl; No Preference for preserveMsgBoundaries. These
	// are the defaults.
	ReliableInorderStream Profile = iota
	// ReliableMessage (SCTP-like): like ReliableInorderStream, and Require
	// preserveMsgBoundaries.
	ReliableMessage
	// UnreliableDatagram (UDP-like): Avoid reliability and preserveOrder, No
	// Preference for congestionControl, Require preserveMsgBoundaries, and
	// safelyReplayable = true as the default Message Property.
	UnreliableDatagram
)

var allProfiles = []Profile{ReliableInorderStream, ReliableMessage, UnreliableDatagram}

// String returns the RFC name: "reliable-inorder-stream",
// "reliable-message" or "unreliable-datagram".
func (p Profile) String() string {
	switch p {
	case ReliableInorderStream:
		return "reliable-inorder-stream"
	case ReliableMessage:
		return "reliable-message"
	case UnreliableDatagram:
		return "unreliable-datagram"
	}
	return fmt.Sprintf("Profile(%d)", uint8(p))
}

// ParseProfile parses a profile name case-insensitively: the RFC form
// ("reliable-message"), Go case ("ReliableMessage") or the seed's constant
// ("RELIABLE_MESSAGE").
func ParseProfile(s string) (Profile, error) {
	return parseNamed("profile", s, allProfiles, nil)
}

// normalizeEnum folds case and drops separators so that "Low Latency/Interactive",
// "low-latency-interactive" and "LOW_LATENCY_INTERACTIVE" compare equal.
func normalizeEnum(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch r {
		case ' ', '-', '_', '/', ',', '.':
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func parseNamed[T fmt.Stringer](what, s string, all []T, aliases map[string]T) (T, error) {
	n := normalizeEnum(s)
	for _, v := range all {
		if normalizeEnum(v.String()) == n {
			return v, nil
		}
	}
	if v, ok := aliases[n]; ok {
		return v, nil
	}
	var zero T
	names := make([]string, len(all))
	for i, v := range all {
		names[i] = v.String()
	}
	want := strings.Join(names, ", ")
	if k := len(names); k > 1 {
		want = strings.Join(names[:k-1], ", ") + " or " + names[k-1]
	}
	return zero, fmt.Errorf("%w: unknown %s %q: want %s", ErrInvalidPropertyValue, what, s, want)
}

// PropertyKind classifies a property (RFC 9622 §4.1, §6.2, §8, §9.1.3).
type PropertyKind uint8

// Property kinds.
const (
	// KindUnknown is the kind of a name that is not a property.
	KindUnknown PropertyKind = iota
	// KindSelection: Selection Properties choose paths and protocols; set
	// on TransportProperties, read-only once a Connection exists.
	KindSelection
	// KindConnection: Connection Properties configure the Connection; set
	// on TransportProperties (initial values) and on Connections.
	KindConnection
	// KindMessage: Message Properties, set per Message on a MessageContext
	// or as defaults on TransportProperties and Connections.
	KindMessage
	// KindReadOnly: Connection Properties that can only be read.
	KindReadOnly
)

// String returns "Selection", "Connection", "Message", "ReadOnly" or
// "Unknown".
func (k PropertyKind) String() string {
	switch k {
	case KindSelection:
		return "Selection"
	case KindConnection:
		return "Connection"
	case KindMessage:
		return "Message"
	case KindReadOnly:
		return "ReadOnly"
	}
	return "Unknown"
}

// Property is the name of a transport property: the RFC 9622 camelCase name
// (protocol-specific properties carry a "tcp." namespace, gotaps-specific
// ones "_gotaps."). Names are case-insensitive; use [ParseProperty] to map
// a user-supplied name (including the seed's kebab-case names) to the
// constant. The comment of each constant gives the value type and the
// default.
type Property string

// Selection Properties (RFC 9622 §6.2). Preference-typed unless noted.
const (
	// Reliability: reliable, in-order delivery with loss and duplicate
	// protection, and notification of close/abort. Default Require.
	Reliability Property = "reliability"
	// PreserveMsgBoundaries: the receiver gets the sender's Message
	// boundaries. Default NoPreference (the seed used Prefer).
	PreserveMsgBoundaries Property = "preserveMsgBoundaries"
	// PerMsgReliability: Messages may have their own reliability
	// (msgReliable). Default NoPreference. Prefer and Require enable QUIC
	// datagrams (RFC 9221), which QUIC uses only when asked, so Avoid and
	// Prohibit do not rule QUIC out: it is selected without them. The
	// peer must enable them too: with Require, a QUIC attempt whose peer
	// did not fails once its handshake tells (ErrDatagramsNotNegotiated,
	// also errors.ErrUnsupported), and a QUIC Listener closes the session
	// of such a client (its Connection is never accepted); with Prefer
	// the Connection goes without them and reads perMsgReliability back
	// false. With
	// Prohibit, a Message sent with msgReliable false on a reliable stack
	// is a SendError (ErrPropertyNotSupported), QUIC included.
	PerMsgReliability Property = "perMsgReliability"
	// PreserveOrder: Messages are delivered in the order they were sent.
	// Default Require.
	PreserveOrder Property = "preserveOrder"
	// ZeroRTTMsg: send a safely replayable Message during establishment
	// (0-RTT). Default NoPreference: InitiateWithSend of a safely
	// replayable Message sends it as QUIC 0-RTT data when a session ticket
	// is cached, and a QUIC Listener accepts 0-RTT data. QUIC sends 0-RTT
	// data only when asked, so Avoid and Prohibit do not rule it out: no
	// 0-RTT is sent (the first Message goes after the handshake, which
	// still resumes a cached session), a Listener refuses a client's
	// 0-RTT data, and the Connection reads zeroRttMsg back as false.
	ZeroRTTMsg Property = "zeroRttMsg"
	// Multistreaming: Connections of one group share a transport
	// connection as streams. Default Prefer.
	Multistreaming Property = "multistreaming"
	// FullChecksumSend: full checksum coverage when sending; Avoid or
	// weaker to allow msgChecksumLen below full. Default Require.
	FullChecksumSend Property = "fullChecksumSend"
	// FullChecksumRecv: full checksum coverage when receiving; Avoid or
	// weaker to allow recvChecksumLen below full. Default Require.
	FullChecksumRecv Property = "fullChecksumRecv"
	// CongestionControl: the transport does congestion control. Default
	// Require.
	CongestionControl Property = "congestionControl"
	// KeepAlive: send keep-alive packets (period keepAliveTimeout). Default
	// NoPreference. TCP, TLS and QUIC send them only when asked (Prefer,
	// Require, or a keepAliveTimeout with NoPreference), so Avoid and
	// Prohibit rule none of them out: they get no keep-alives. With
	// Prohibit, a keepAliveTimeout other than Disabled is a conflict
	// (ErrConflictingProperties), on the Preconnection and in a later
	// Connection.SetProperty alike.
	KeepAlive Property = "keepAlive"
	// Interface: a set of (Preference, interface name or type); set with
	// [TransportProperties.SetInterface] or Set with a map[string]Preference.
	// Default empty. An entry names an interface ("eth0") or a type of
	// interface: "loopback", "ethernet"/"wired", "wifi"/"Wi-Fi"/"wlan",
	// "cellular"/"wwan" (any case; an entry naming the interface wins over
	// one naming its type). On Initiate, Require binds every attempt to a
	// Required interface (SO_BINDTODEVICE; several Required interfaces are
	// alternatives) and fails before any packet, with a [*PathError], when
	// no Required interface is up; Prohibit: an attempt whose route (the
	// kernel's route lookup) goes out of that interface is not made, and
	// is offered instead bound to each other up interface with a route to
	// the remote (not for this host's own addresses, which only the
	// loopback reaches); when nothing is left the [EstablishmentError]
	// (ReasonNoCandidates) carries the [*PathError]. Prefer: attempts
	// bound to that interface come first; Avoid: attempts going out of it
	// come last (after attempts bound to the other interfaces). On Listen,
	// Require binds a listening socket to each Required interface and
	// Prohibit binds one to each up interface that is not Prohibited,
	// even when what is Prohibited is down or absent at Listen, and none
	// unbound (Listen fails, the [EstablishmentError] carrying a
	// [*PathError], when no allowed interface is up); on Linux the
	// listener follows them: an allowed interface that comes up later is
	// listened on, on the same port, a Prohibited one never, and one that
	// goes down loses its socket; connections already accepted stay.
	// Prefer and Avoid do not change a passive open.
	Interface Property = "interface"
	// PvD: a set of (Preference, Provisioning Domain); set with
	// [TransportProperties.SetPvD] or Set with a map[string]Preference.
	// Default empty. Linux has no Provisioning Domain API, so no path has a
	// PvD: Require of any PvD fails before any packet with a [*PathError]
	// wrapping [ErrPvDUnsupported]; Prefer, Avoid and Prohibit are
	// accepted and change nothing (no path has the PvD to prefer, and none
	// has the one to avoid).
	PvD Property = "pvd"
	// UseTemporaryLocalAddress: use temporary (privacy, RFC 8981) local
	// addresses. Default depends on the role (RFC 9622 §6.2.13): Prefer for
	// Initiate, Avoid for Listen and Rendezvous. On IPv6 sockets of the
	// TCP, TLS and QUIC stacks, Require and Prefer set
	// IPV6_ADDR_PREFERENCES to IPV6_PREFER_SRC_TMP, Avoid and Prohibit to
	// IPV6_PREFER_SRC_PUBLIC (MPTCP sockets do not take the option). With
	// Require no IPv4 attempt is made (IPv4 has no temporary addresses),
	// and with Require or Prohibit the source address of each IPv6 attempt
	// is chosen before the attempt (as the kernel would, with the
	// preference), checked to be (or not be) temporary and bound: an
	// attempt without a fitting address is not made ([*PathError]). On
	// Listen the check applies to the local endpoints' own addresses.
	UseTemporaryLocalAddress Property = "useTemporaryLocalAddress"
	// Multipath: a [MultipathMode]. Default depends on the role:
	// MultipathDisabled for Initiate and Rendezvous, MultipathPassive for
	// Listen. Active and Passive make the TCP-based stacks (tcp, tls) use
	// Multipath TCP (IPPROTO_MPTCP; plain TCP when the kernel or peer
	// does not support it); Active also ranks multipath-capable stacks
	// first; Disabled never uses it. Read back on a Connection it tells
	// what the socket really runs: MultipathDisabled unless the
	// connection is MPTCP.
	Multipath Property = "multipath"
	// AdvertisesAltaddr: bool, advertise other local addresses to the peer.
	// Default false. On Linux the MPTCP path manager (per network
	// namespace, "ip mptcp endpoint ... signal"), not the connection,
	// decides which addresses are advertised (ADD_ADDR): true fails
	// Initiate and Listen before any packet with a [*PropertyError]
	// wrapping [ErrPropertyUnsatisfiable], and a Connection reads it back
	// as false.
	AdvertisesAltaddr Property = "advertisesAltaddr"
	// Direction: a [CommunicationDirection]. Default Bidirectional.
	Direction Property = "direction"
	// SoftErrorNotify: deliver SoftError events (ICMP errors, ...). Default
	// NoPreference. Prefer and Require turn ICMP error delivery on for UDP
	// and UDP-Lite (Linux: IP_RECVERR); otherwise ICMP errors are
	// swallowed, so Avoid and Prohibit do not rule UDP out: it is selected
	// without them.
	SoftErrorNotify Property = "softErrorNotify"
	// ActiveReadBeforeSend: the initiator reads first, or the listener
	// writes first. Default NoPreference. Require selects only stacks on
	// which the Listener hands a connection on before the initiator sends
	// anything (TCP, TLS, Unix): not QUIC, whose stream the peer sees only
	// with its first data, nor UDP, whose listener sees a peer only with
	// its first datagram. Prefer ranks those stacks first; Avoid and
	// Prohibit rule nothing out (a stack that lets either side write first
	// serves an initiator that writes first too). Rendezvous ignores it
	// (RFC 9622 §6.2.18): both sides are active.
	ActiveReadBeforeSend Property = "activeReadBeforeSend"
	// RetransmitNotify: the seed's "retransmit-notify" (removed from the
	// RFC; SoftError covers it), kept as an implementation-specific
	// Selection Property. Default NoPreference. Require and Prefer select
	// TCP and TLS, which report retransmissions (OnExcessiveRetransmission)
	// only then; Avoid and Prohibit rule them out no more than QUIC: they
	// are selected without the reports, and read it back as false. With
	// Prohibit, a RetransmitNotifyThreshold other than Disabled is a
	// conflict (ErrConflictingProperties), on the Preconnection and in a
	// later Connection.SetProperty alike.
	RetransmitNotify Property = "_gotaps.retransmitNotify"
)

// Generic Connection Properties (RFC 9622 §8.1).
const (
	// RecvChecksumLen: int >= 0 or FullCoverage, the minimum receive
	// checksum coverage in bytes. Default FullCoverage. On UDP-Lite it is
	// the socket's UDPLITE_RECV_CSCOV: the Connections a Listener accepted
	// share their Listener's socket and its value (SetProperty to another
	// value fails with stacks.ErrNotApplicable).
	RecvChecksumLen Property = "recvChecksumLen"
	// ConnPriority: int >= 0, lower is more important; only within a
	// Connection Group, not entangled. Default 100.
	ConnPriority Property = "connPriority"
	// ConnTimeout: time.Duration > 0 or Disabled, the time before a
	// Connection that cannot deliver reliably is declared failed. Setting
	// it also sets tcp.userTimeoutChangeable to false. Default Disabled.
	// The transport applies it to what it holds (TCP and TLS:
	// TCP_USER_TIMEOUT; QUIC: the idle timeout, which also ends a
	// connection that is merely idle unless keepAliveTimeout is shorter),
	// and a Connection it ends fails with a [*ConnectionError] with
	// ReasonTimeout unwrapping to syscall.ETIMEDOUT on either (QUIC's
	// also to net.ErrClosed and to a net.Error whose Timeout is true,
	// quic-go's IdleTimeoutError); gotaps applies it to the
	// messages queued in its own send queue while the transport takes
	// nothing (a peer that stopped reading filled the socket's send buffer
	// or the stream's flow-control window): once the blocked write has made
	// no progress for connTimeout, Established or Closing, the Connection
	// fails with a [*ConnectionError] unwrapping to syscall.ETIMEDOUT (as
	// TCP_USER_TIMEOUT's does), and the messages still queued get
	// [*SendError]s unwrapping to it. Progress is any byte the transport
	// takes, or on TCP and TLS (Linux) any byte the peer acknowledges, and
	// it restarts the period: a peer that reads slowly is never failed by
	// this check, only one that takes nothing at all (on Linux, the
	// kernel's TCP_USER_TIMEOUT counts zero-window probing from its first
	// probe until the peer's window opens for the whole next queued
	// segment, so a peer that keeps its receive window smaller than that
	// while it reads slowly may still be failed by the kernel after
	// connTimeout, with the same ETIMEDOUT). The write is checked every
	// connTimeout/4: the failure comes between connTimeout and 1.5 times
	// connTimeout after the last progress.
	ConnTimeout Property = "connTimeout"
	// KeepAliveTimeout: time.Duration > 0 or Disabled, the longest idle
	// period before a keep-alive. Default Disabled.
	KeepAliveTimeout Property = "keepAliveTimeout"
	// ConnScheduler: a [Scheduler]. Default WeightedFairQueueing.
	ConnScheduler Property = "connScheduler"
	// ConnCapacityProfile: a [CapacityProfile]. Default CapacityDefault.
	ConnCapacityProfile Property = "connCapacityProfile"
	// MultipathPolicy: a [MultipathPolicyMode]. Default Handover. The
	// Linux in-kernel MPTCP path manager and scheduler are configured per
	// network namespace (ip mptcp endpoint flags, net.mptcp sysctls), not
	// per connection: with multipath not Disabled and a multipath-capable
	// stack selected, Interactive and Aggregate fail Initiate and Listen
	// before any packet (and SetProperty on such a Connection) with a
	// [*PropertyError] wrapping [ErrPropertyUnsatisfiable]. Handover is
	// accepted and means what the namespace's path manager is configured
	// to do.
	MultipathPolicy Property = "multipathPolicy"
	// MinSendRate: int > 0 (bit/s) or Unlimited. Default Unlimited.
	MinSendRate Property = "minSendRate"
	// MinRecvRate: int > 0 (bit/s) or Unlimited. Default Unlimited.
	MinRecvRate Property = "minRecvRate"
	// MaxSendRate: int > 0 (bit/s) or Unlimited. Default Unlimited.
	MaxSendRate Property = "maxSendRate"
	// MaxRecvRate: int > 0 (bit/s) or Unlimited. Default Unlimited.
	MaxRecvRate Property = "maxRecvRate"
	// GroupConnLimit: int > 0 or Unlimited, the most Connections the peer
	// may add to the group. Default Unlimited. A stream the peer opens
	// beyond it (QUIC) is refused: the peer's Connection ends with a
	// [*ConnectionError] unwrapping to stacks.ErrStreamRefused.
	GroupConnLimit Property = "groupConnLimit"
	// IsolateSession: bool, share no cached state outside the group.
	// Default false.
	IsolateSession Property = "isolateSession"
	// RetransmitNotifyThreshold: the seed's "retransmit-notify-threshold"
	// (removed from the RFC): int >= 1 retransmissions or Disabled. Default
	// Disabled. A number contradicts Prohibit RetransmitNotify
	// (ErrConflictingProperties).
	RetransmitNotifyThreshold Property = "_gotaps.retransmitNotifyThreshold"

	// ConnState is read-only: the Connection's state.
	ConnState Property = "connState"
	// CanSend is read-only: whether the Connection can send.
	CanSend Property = "canSend"
	// CanReceive is read-only: whether the Connection can receive.
	CanReceive Property = "canReceive"
	// SingularTransmissionMsgMaxLen is read-only (int64): the largest
	// Message sent in one packet, without network-layer fragmentation or
	// transport segmentation (RFC 9622 §8.1.11.1). UDP and UDP-Lite: the
	// path MTU the kernel knows (IP_MTU / IPV6_MTU) less the IP and UDP
	// headers; TCP: the MSS (TCP_MAXSEG); TLS: the MSS less one record's
	// overhead; NotApplicable on QUIC streams and Unix sockets, and on a
	// Connection that cannot send (direction UnidirectionalReceive, a
	// multicast Listener's). Framers' per-Message bytes
	// (framers.MessageOverheader) come off it, and it is at most
	// sendMsgMaxLen. Unknown (not reported) off Linux.
	SingularTransmissionMsgMaxLen Property = "singularTransmissionMsgMaxLen"
	// SendMsgMaxLen is read-only: the largest Message that can be sent.
	SendMsgMaxLen Property = "sendMsgMaxLen"
	// RecvMsgMaxLen is read-only: the largest Message that can be received.
	RecvMsgMaxLen Property = "recvMsgMaxLen"
)

// TCP-specific Connection Properties (RFC 9622 §8.2, RFC 5482 User Timeout
// Option). They configure TCP only when TCP is selected.
const (
	// TCPUserTimeoutValue: time.Duration > 0, the user timeout advertised
	// in the UTO. Default 5 minutes (the TCP default of RFC 9293, and the
	// seed's 300 s). While tcp.userTimeoutEnabled is true it is the
	// socket's TCP_USER_TIMEOUT (TCP and TLS, Linux), also when set on an
	// open Connection.
	TCPUserTimeoutValue Property = "tcp.userTimeoutValue"
	// TCPUserTimeoutEnabled: bool, send and accept the UTO. Default false.
	// On TCP and TLS (Linux) true sets TCP_USER_TIMEOUT to
	// tcp.userTimeoutValue; false leaves connTimeout's (or 0, the system
	// default). Setting it on an open Connection changes the socket at
	// once. Linux sends no UTO option: the value stays local.
	TCPUserTimeoutEnabled Property = "tcp.userTimeoutEnabled"
	// TCPUserTimeoutChangeable: bool, a received UTO may change
	// connTimeout. Default true on a Preconnection; becomes false when
	// connTimeout is set. Linux has no UTO option, so no peer can change
	// it: a Connection reads it back as false and
	// [Connection.SetProperty] refuses it ([ErrReadOnlyProperty]).
	TCPUserTimeoutChangeable Property = "tcp.userTimeoutChangeable"
)

// Message Properties (RFC 9622 §9.1.3). On TransportProperties they are
// the defaults for every Message; a [MessageContext] overrides them.
const (
	// MsgLifetime: time.Duration > 0 or Infinite. Default Infinite.
	MsgLifetime Property = "msgLifetime"
	// MsgPriority: int >= 0, lower is more important, within one
	// Connection: Messages waiting to be sent leave by it. Only a Message
	// with msgOrdered false moves ahead: those with msgOrdered true (as on
	// TCP, TLS and QUIC streams unless set otherwise) keep the order they
	// were sent in, whatever their priority (RFC 9622 §9.1.3.3). Default
	// 100.
	MsgPriority Property = "msgPriority"
	// MsgOrdered: bool. Default: preserveOrder as read back from the
	// Connection. false is a hint (a stack that orders anyway sends the
	// Message in order); true set on a stack that does not keep order
	// (UDP) is a SendError wrapping ErrPropertyNotSupported.
	MsgOrdered Property = "msgOrdered"
	// SafelyReplayable: bool, the Message may be delivered more than once
	// (0-RTT, UDP). The seed called it "idempotent". Default false.
	SafelyReplayable Property = "safelyReplayable"
	// Final: bool, the last Message of the Connection. Default false.
	Final Property = "final"
	// MsgChecksumLen: int >= 0 or FullCoverage. Default FullCoverage.
	MsgChecksumLen Property = "msgChecksumLen"
	// MsgReliable: bool. Default: reliability as read back from the
	// Connection. false on a reliable stack without perMsgReliability, and
	// true set on a stack that does not retransmit (UDP), are SendErrors
	// wrapping ErrPropertyNotSupported.
	MsgReliable Property = "msgReliable"
	// MsgCapacityProfile: a [CapacityProfile]. Default: connCapacityProfile.
	MsgCapacityProfile Property = "msgCapacityProfile"
	// NoFragmentation: bool, send without network-layer fragmentation
	// (RFC 9622 §9.1.3.9). Default false: fragmentation allowed.
	//   - UDP, UDP-Lite: the socket is switched to IP_PMTUDISC_DO /
	//     IPV6_PMTUDISC_DO (Linux; IP_DONTFRAG / IPV6_DONTFRAG on Darwin
	//     and FreeBSD) for the message: IPv4 sets DF, IPv6 never
	//     fragments at the source. A message larger than the path MTU the
	//     kernel knows is not sent: its SendError wraps a
	//     *stacks.FragmentationError ([stacks.ErrFragmentationNeeded]) and
	//     the Connection stays usable. The switch back to the socket's
	//     default comes with the next message without the property; a run
	//     of messages with the same setting costs no system call.
	//   - TCP, TLS: the transport segments to the path MTU and Linux sets
	//     DF on TCP (IP_PMTUDISC_WANT); the first such message switches a
	//     socket with path MTU discovery off (IP_PMTUDISC_DONT) back on.
	//   - QUIC: quic-go sets DF on every packet it sends
	//     (IP_PMTUDISC_PROBE on Linux, IP_DONTFRAG on Darwin) and sizes
	//     them to the path MTU it discovers: nothing more to do.
	NoFragmentation Property = "noFragmentation"
	// NoSegmentation: bool, send as one transport segment without
	// fragmentation: on UDP and UDP-Lite, framed or not, each Message is
	// one datagram, sent as noFragmentation sends it (one larger than the
	// path MTU is a SendError); on a byte stream (TCP, TLS, QUIC streams)
	// a SendError wrapping ErrPropertyNotSupported. Default false.
	NoSegmentation Property = "noSegmentation"
)

// String returns the property's name.
func (p Property) String() string { return string(p) }

// Kind returns the kind of the property, KindUnknown for an unknown name.
func (p Property) Kind() PropertyKind {
	if d := descOf(p); d != nil {
		return d.kind
	}
	return KindUnknown
}

// valueType is the type of a property's value.
type valueType uint8

const (
	vtPreference valueType = iota + 1
	vtBool
	vtDuration // time.Duration > 0, or special
	vtInt      // int64 >= min, or special
	vtEnum
	vtNamedPreferences // map[string]Preference
	vtReadOnly
)

// enumValue is implemented by the enum types a property can hold.
type enumValue interface {
	fmt.Stringer
	valid() bool
}

type enumCodec struct {
	typeName string
	is       func(v any) (enumValue, bool)
	parse    func(s string) (enumValue, error)
}

func newEnumCodec[T enumValue](parse func(string) (T, error)) *enumCodec {
	var zero T
	return &enumCodec{
		typeName: fmt.Sprintf("%T", zero),
		is: func(v any) (enumValue, bool) {
			e, ok := v.(T)
			return e, ok
		},
		parse: func(s string) (enumValue, error) { return parse(s) },
	}
}

var (
	schedulerCodec       = newEnumCodec(ParseScheduler)
	capacityProfileCodec = newEnumCodec(ParseCapacityProfile)
	multipathCodec       = newEnumCodec(ParseMultipathMode)
	multipathPolicyCodec = newEnumCodec(ParseMultipathPolicy)
	directionCodec       = newEnumCodec(ParseDirection)
)

// defaultRule says where a property's default comes from when def is nil.
type defaultRule uint8

const (
	defFixed     defaultRule = iota // def
	defRole                         // depends on Initiate / Listen / Rendezvous
	defInherited                    // from a Connection Property or the selected stack
)

// propDesc describes one property: its kind, value type, range and default.
type propDesc struct {
	name    Property
	kind    PropertyKind
	vt      valueType
	special Special // the one Special accepted besides numbers; 0 = none
	min     int64   // smallest integer accepted (vtInt)
	enum    *enumCodec
	rule    defaultRule
	def     any
}

func prefProp(p Property, def Preference) propDesc {
	return propDesc{name: p, kind: KindSelection, vt: vtPreference, def: def}
}

func boolProp(p Property, k PropertyKind, def bool) propDesc {
	return propDesc{name: p, kind: k, vt: vtBool, def: def}
}

func readOnlyProp(p Property) propDesc {
	return propDesc{name: p, kind: KindReadOnly, vt: vtReadOnly, rule: defInherited}
}

// propTable lists every property in the order of Properties().
var propTable = []propDesc{
	prefProp(Reliability, Require),
	prefProp(PreserveMsgBoundaries, NoPreference),
	prefProp(PerMsgReliability, NoPreference),
	prefProp(PreserveOrder, Require),
	prefProp(ZeroRTTMsg, NoPreference),
	prefProp(Multistreaming, Prefer),
	prefProp(FullChecksumSend, Require),
	prefProp(FullChecksumRecv, Require),
	prefProp(CongestionControl, Require),
	prefProp(KeepAlive, NoPreference),
	{name: Interface, kind: KindSelection, vt: vtNamedPreferences, def: map[string]Preference{}},
	{name: PvD, kind: KindSelection, vt: vtNamedPreferences, def: map[string]Preference{}},
	{name: UseTemporaryLocalAddress, kind: KindSelection, vt: vtPreference, rule: defRole},
	{name: Multipath, kind: KindSelection, vt: vtEnum, enum: multipathCodec, rule: defRole},
	boolProp(AdvertisesAltaddr, KindSelection, false),
	{name: Direction, kind: KindSelection, vt: vtEnum, enum: directionCodec, def: Bidirectional},
	prefProp(SoftErrorNotify, NoPreference),
	prefProp(ActiveReadBeforeSend, NoPreference),
	prefProp(RetransmitNotify, NoPreference),

	{name: RecvChecksumLen, kind: KindConnection, vt: vtInt, special: FullCoverage, def: FullCoverage},
	{name: ConnPriority, kind: KindConnection, vt: vtInt, def: int64(100)},
	{name: ConnTimeout, kind: KindConnection, vt: vtDuration, special: Disabled, def: Disabled},
	{name: KeepAliveTimeout, kind: KindConnection, vt: vtDuration, special: Disabled, def: Disabled},
	{name: ConnScheduler, kind: KindConnection, vt: vtEnum, enum: schedulerCodec, def: WeightedFairQueueing},
	{name: ConnCapacityProfile, kind: KindConnection, vt: vtEnum, enum: capacityProfileCodec, def: CapacityDefault},
	{name: MultipathPolicy, kind: KindConnection, vt: vtEnum, enum: multipathPolicyCodec, def: Handover},
	{name: MinSendRate, kind: KindConnection, vt: vtInt, min: 1, special: Unlimited, def: Unlimited},
	{name: MinRecvRate, kind: KindConnection, vt: vtInt, min: 1, special: Unlimited, def: Unlimited},
	{name: MaxSendRate, kind: KindConnection, vt: vtInt, min: 1, special: Unlimited, def: Unlimited},
	{name: MaxRecvRate, kind: KindConnection, vt: vtInt, min: 1, special: Unlimited, def: Unlimited},
	{name: GroupConnLimit, kind: KindConnection, vt: vtInt, min: 1, special: Unlimited, def: Unlimited},
	boolProp(IsolateSession, KindConnection, false),
	{name: RetransmitNotifyThreshold, kind: KindConnection, vt: vtInt, min: 1, special: Disabled, def: Disabled},
	{name: TCPUserTimeoutValue, kind: KindConnection, vt: vtDuration, def: 5 * time.Minute},
	boolProp(TCPUserTimeoutEnabled, KindConnection, false),
	boolProp(TCPUserTimeoutChangeable, KindConnection, true),
	readOnlyProp(ConnState),
	readOnlyProp(CanSend),
	readOnlyProp(CanReceive),
	readOnlyProp(SingularTransmissionMsgMaxLen),
	readOnlyProp(SendMsgMaxLen),
	readOnlyProp(RecvMsgMaxLen),

	{name: MsgLifetime, kind: KindMessage, vt: vtDuration, special: Infinite, def: Infinite},
	{name: MsgPriority, kind: KindMessage, vt: vtInt, def: int64(100)},
	{name: MsgOrdered, kind: KindMessage, vt: vtBool, rule: defInherited},
	boolProp(SafelyReplayable, KindMessage, false),
	boolProp(Final, KindMessage, false),
	{name: MsgChecksumLen, kind: KindMessage, vt: vtInt, special: FullCoverage, def: FullCoverage},
	{name: MsgReliable, kind: KindMessage, vt: vtBool, rule: defInherited},
	{name: MsgCapacityProfile, kind: KindMessage, vt: vtEnum, enum: capacityProfileCodec, rule: defInherited},
	boolProp(NoFragmentation, KindMessage, false),
	boolProp(NoSegmentation, KindMessage, false),
}

// seedAliases maps the seed's (NEATPy, draft-06) kebab-case names that are
// not simply the kebab case of the RFC name to the RFC property.
var seedAliases = map[string]Property{
	"per-msg-checksum-len-send":   FullChecksumSend,
	"per-msg-checksum-len-recv":   FullChecksumRecv,
	"local-address-preference":    UseTemporaryLocalAddress,
	"retransmit-notify":           RetransmitNotify,
	"retransmit-notify-threshold": RetransmitNotifyThreshold,
	"conn-prio":                   ConnPriority,
	"tcp.user-timeout-value":      TCPUserTimeoutValue,
	"tcp.user-timeout":            TCPUserTimeoutEnabled,
	"tcp.user-timeout-recv":       TCPUserTimeoutChangeable,
	"msg-prio":                    MsgPriority,
	"idempotent":                  SafelyReplayable,
	"singular-transmission":       NoSegmentation,
}

var (
	propIndex map[Property]*propDesc
	nameIndex map[string]Property // lower-case name -> property
)

func init() {
	propIndex = make(map[Property]*propDesc, len(propTable))
	nameIndex = make(map[string]Property, 3*len(propTable)+len(seedAliases))
	for i := range propTable {
		d := &propTable[i]
		propIndex[d.name] = d
		for _, n := range []string{string(d.name), caseSeparated(string(d.name), '-'), caseSeparated(string(d.name), '_')} {
			nameIndex[strings.ToLower(n)] = d.name
		}
	}
	for n, p := range seedAliases {
		nameIndex[n] = p
	}
}

// caseSeparated turns "tcp.userTimeoutValue" into "tcp.user-timeout-value"
// (sep '-') or "tcp.user_timeout_value" (sep '_').
func caseSeparated(s string, sep byte) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 && s[i-1] != '.' && s[i-1] != '_' {
				b.WriteByte(sep)
			}
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// descOf returns the descriptor of p, accepting any spelling ParseProperty
// accepts; nil when p is unknown.
func descOf(p Property) *propDesc {
	if d, ok := propIndex[p]; ok {
		return d
	}
	if q, ok := nameIndex[strings.ToLower(string(p))]; ok {
		return propIndex[q]
	}
	return nil
}

func lookupDesc(op string, p Property) (*propDesc, error) {
	if d := descOf(p); d != nil {
		return d, nil
	}
	return nil, &PropertyError{Op: op, Property: p, Err: ErrUnknownProperty}
}

// ParseProperty maps a property name to its constant. Names are
// case-insensitive (RFC 9622 §4.1) and may be written in camelCase (the
// canonical form), kebab-case or snake_case; the seed's names are accepted
// as aliases ("conn-prio", "msg-prio", "idempotent",
// "per-msg-checksum-len-send", "local-address-preference",
// "tcp.user-timeout", "singular-transmission" (= noSegmentation), ...). An
// unknown name gives a [*PropertyError] wrapping [ErrUnknownProperty]. The
// seed names that stand for no single property say where their meaning
// went: "tcp-uto" (RFC 9622 split it into tcp.userTimeoutValue,
// tcp.userTimeoutEnabled and tcp.userTimeoutChangeable), "max-send-rate /
// max-recv-rate" (minSendRate, minRecvRate, maxSendRate, maxRecvRate),
// "zero-rtt-msg-max-len" (removed from the RFC) and "ecn", "early-data",
// "receiving-final-messages" (received messages' metadata:
// MessageContext.ECN, EarlyData, IsFinal).
func ParseProperty(name string) (Property, error) {
	key := strings.ToLower(strings.TrimSpace(name))
	if p, ok := nameIndex[key]; ok {
		return p, nil
	}
	err := ErrUnknownProperty
	if where, ok := seedComposites[key]; ok {
		err = fmt.Errorf("%w: the seed's %q is %s", ErrUnknownProperty, key, where)
	}
	return "", &PropertyError{Op: "parse", Property: Property(name), Err: err}
}

// seedComposites are the seed's property names that map to no single
// RFC 9622 property: where their meaning went.
var seedComposites = map[string]string{
	"tcp-uto":                       "three properties: tcp.userTimeoutValue, tcp.userTimeoutEnabled, tcp.userTimeoutChangeable",
	"max-send-rate / max-recv-rate": "four properties: minSendRate, minRecvRate, maxSendRate, maxRecvRate",
	"zero-rtt-msg-max-len":          "removed from RFC 9622 (zeroRttMsg selects 0-RTT; InitiateWithSend sends it)",
	"ecn":                           "received messages' metadata: MessageContext.ECN",
	"early-data":                    "received messages' metadata: MessageContext.EarlyData",
	"receiving-final-messages":      "received messages' metadata: MessageContext.IsFinal",
}

// want describes the values a property accepts, for error messages.
func (d *propDesc) want() string {
	switch d.vt {
	case vtPreference:
		return "a Preference"
	case vtBool:
		return "a bool"
	case vtDuration:
		if d.special != 0 {
			return "a time.Duration > 0 or " + d.special.String()
		}
		return "a time.Duration > 0"
	case vtInt:
		s := fmt.Sprintf("an integer >= %d", d.min)
		if d.special != 0 {
			s += " or " + d.special.String()
		}
		return s
	case vtEnum:
		return "a " + d.enum.typeName
	case vtNamedPreferences:
		return "a map[string]Preference with non-empty names"
	}
	return "nothing (read-only)"
}

func (d *propDesc) typeErr(op string, v any) error {
	return &PropertyError{Op: op, Property: d.name, Value: v,
		Err: fmt.Errorf("%w %T: want %s", ErrInvalidPropertyType, v, d.want())}
}

func (d *propDesc) valueErr(op string, v any) error {
	return &PropertyError{Op: op, Property: d.name, Value: v,
		Err: fmt.Errorf("%w %v: want %s", ErrInvalidPropertyValue, v, d.want())}
}

// propInt64 converts any Go integer type. isInt is false for other types;
// ok is false when the value does not fit in an int64.
func propInt64(v any) (n int64, isInt, ok bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true, true
	case int8:
		return int64(x), true, true
	case int16:
		return int64(x), true, true
	case int32:
		return int64(x), true, true
	case int64:
		return x, true, true
	case uint:
		return int64(x), true, uint64(x) <= math.MaxInt64
	case uint8:
		return int64(x), true, true
	case uint16:
		return int64(x), true, true
	case uint32:
		return int64(x), true, true
	case uint64:
		return int64(x), true, x <= math.MaxInt64
	}
	return 0, false, false
}

// check validates v for the property and returns it in canonical form:
// Preference, bool, time.Duration, int64, Special, the enum type, or a
// fresh map[string]Preference without NoPreference entries.
func (d *propDesc) check(op string, v any) (any, error) {
	switch d.vt {
	case vtReadOnly:
		return nil, &PropertyError{Op: op, Property: d.name, Value: v, Err: ErrReadOnlyProperty}
	case vtPreference:
		p, ok := v.(Preference)
		if !ok {
			return nil, d.typeErr(op, v)
		}
		if !p.valid() {
			return nil, d.valueErr(op, v)
		}
		return p, nil
	case vtBool:
		b, ok := v.(bool)
		if !ok {
			return nil, d.typeErr(op, v)
		}
		return b, nil
	case vtDuration:
		switch x := v.(type) {
		case time.Duration:
			if x <= 0 {
				return nil, d.valueErr(op, v)
			}
			return x, nil
		case Special:
			return d.checkSpecial(op, x)
		}
		return nil, d.typeErr(op, v)
	case vtInt:
		if s, ok := v.(Special); ok {
			return d.checkSpecial(op, s)
		}
		n, isInt, ok := propInt64(v)
		if !isInt {
			return nil, d.typeErr(op, v)
		}
		if !ok || n < d.min {
			return nil, d.valueErr(op, v)
		}
		return n, nil
	case vtEnum:
		e, ok := d.enum.is(v)
		if !ok {
			return nil, d.typeErr(op, v)
		}
		if !e.valid() {
			return nil, d.valueErr(op, v)
		}
		return e, nil
	case vtNamedPreferences:
		m, ok := v.(map[string]Preference)
		if !ok {
			return nil, d.typeErr(op, v)
		}
		out := make(map[string]Preference, len(m))
		for name, p := range m {
			if name == "" || !p.valid() {
				return nil, d.valueErr(op, v)
			}
			if p != NoPreference {
				out[name] = p
			}
		}
		return out, nil
	}
	return nil, d.typeErr(op, v)
}

func (d *propDesc) checkSpecial(op string, s Special) (any, error) {
	if d.special == 0 {
		return nil, d.typeErr(op, s)
	}
	if s != d.special {
		return nil, d.valueErr(op, s)
	}
	return s, nil
}

// isFixedDefault reports whether v equals the property's fixed default.
func (d *propDesc) isFixedDefault(v any) bool {
	if d.rule != defFixed {
		return false
	}
	if m, ok := v.(map[string]Preference); ok {
		return len(m) == 0
	}
	return v == d.def
}

// role is the establishment role that picks role-dependent defaults.
type role uint8

const (
	roleUnset role = iota // treated as roleInitiate
	roleInitiate
	roleListen
	roleRendezvous
)

func roleOf(listen bool) role {
	if listen {
		return roleListen
	}
	return roleInitiate
}

// TransportProperties holds the Selection Properties, the initial
// Connection Properties and the default Message Properties of a
// Preconnection (RFC 9622 §6.2). Values not set explicitly have their RFC
// 9622 defaults; the zero value, like [NewTransportProperties] without
// profiles, holds only defaults.
//
// A TransportProperties is not safe for concurrent mutation: mutate it from
// one goroutine, or guard it. It is copied (call-by-value, RFC 9622 §1.1)
// when a Preconnection is created, so later changes do not affect that
// Preconnection or its Connections.
type TransportProperties struct {
	values map[Property]any // explicitly set values, in canonical form
	role   role             // resolves role-dependent defaults (ForRole)
}

// NewTransportProperties returns properties holding the RFC 9622 defaults,
// then applies each profile in order (RFC 9622 App. B.2; unknown Profile
// values are ignored). Values set by a profile count as explicitly set.
func NewTransportProperties(profiles ...Profile) *TransportProperties {
	tp := &TransportProperties{}
	for _, p := range profiles {
		tp.applyProfile(p)
	}
	return tp
}

func (tp *TransportProperties) applyProfile(p Profile) {
	switch p {
	case ReliableInorderStream:
		tp.store(Reliability, Require)
		tp.store(PreserveOrder, Require)
		tp.store(CongestionControl, Require)
		tp.store(PreserveMsgBoundaries, NoPreference)
	case ReliableMessage:
		tp.store(Reliability, Require)
		tp.store(PreserveOrder, Require)
		tp.store(CongestionControl, Require)
		tp.store(PreserveMsgBoundaries, Require)
	case UnreliableDatagram:
		tp.store(Reliability, Avoid)
		tp.store(PreserveOrder, Avoid)
		tp.store(CongestionControl, NoPreference)
		tp.store(PreserveMsgBoundaries, Require)
		tp.store(SafelyReplayable, true)
	}
}

func (tp *TransportProperties) store(p Property, v any) {
	if tp.values == nil {
		tp.values = make(map[Property]any)
	}
	tp.values[p] = v
}

func (tp *TransportProperties) lookup(p Property) (any, bool) {
	if tp == nil {
		return nil, false
	}
	v, ok := tp.values[p]
	return v, ok
}

// Set sets property p to v, overwriting the previous value. The value must
// have the property's type (see the property's constant):
//   - Preference for preference-typed Selection Properties;
//   - bool;
//   - time.Duration > 0, or the Special the property accepts (Disabled for
//     connTimeout and keepAliveTimeout, Infinite for msgLifetime);
//   - any Go integer type (stored as int64), within the property's range,
//     or the Special it accepts (Unlimited, FullCoverage, Disabled);
//   - the enum type ([Scheduler], [CapacityProfile], [MultipathMode],
//     [MultipathPolicyMode], [CommunicationDirection]);
//   - map[string]Preference for interface and pvd (replacing the set).
//
// Errors are [*PropertyError] values wrapping [ErrUnknownProperty],
// [ErrInvalidPropertyType], [ErrInvalidPropertyValue] or
// [ErrReadOnlyProperty]; on error nothing changes. Setting connTimeout also
// sets tcp.userTimeoutChangeable to false (RFC 9622 §8.2).
func (tp *TransportProperties) Set(p Property, v any) error {
	d, err := lookupDesc("set", p)
	if err != nil {
		return err
	}
	cv, err := d.check("set", v)
	if err != nil {
		return err
	}
	tp.store(d.name, cv)
	if d.name == ConnTimeout {
		tp.store(TCPUserTimeoutChangeable, false)
	}
	return nil
}

// Require sets the preference-typed Selection Property p to Require. It
// fails with an [ErrInvalidPropertyType] error when p is not
// preference-typed (interface, pvd, multipath, direction, ...).
func (tp *TransportProperties) Require(p Property) error { return tp.Set(p, Require) }

// Prefer sets the preference-typed Selection Property p to Prefer.
func (tp *TransportProperties) Prefer(p Property) error { return tp.Set(p, Prefer) }

// NoPreference sets the preference-typed Selection Property p to
// NoPreference.
func (tp *TransportProperties) NoPreference(p Property) error { return tp.Set(p, NoPreference) }

// Ignore is NoPreference under the seed's name.
func (tp *TransportProperties) Ignore(p Property) error { return tp.NoPreference(p) }

// Avoid sets the preference-typed Selection Property p to Avoid.
func (tp *TransportProperties) Avoid(p Property) error { return tp.Set(p, Avoid) }

// Prohibit sets the preference-typed Selection Property p to Prohibit.
func (tp *TransportProperties) Prohibit(p Property) error { return tp.Set(p, Prohibit) }

// Default resets p to its default (the seed's default()): afterwards
// IsSet(p) is false. It fails for unknown and read-only properties.
func (tp *TransportProperties) Default(p Property) error {
	d, err := lookupDesc("set", p)
	if err != nil {
		return err
	}
	if d.vt == vtReadOnly {
		return &PropertyError{Op: "set", Property: d.name, Err: ErrReadOnlyProperty}
	}
	delete(tp.values, d.name)
	return nil
}

// SetInterface sets the preference for one interface instance or type
// ("eth0", "Wi-Fi", "Cellular", "loopback") in the interface Selection
// Property; pref NoPreference removes the entry. Default: no entries. See
// [Interface] for what each preference does.
func (tp *TransportProperties) SetInterface(name string, pref Preference) error {
	return tp.setNamed(Interface, name, pref)
}

// SetPvD sets the preference for one Provisioning Domain in the pvd
// Selection Property; pref NoPreference removes the entry. Default: no
// entries. This system has no PvD API: Require makes Initiate and Listen
// fail with [ErrPvDUnsupported], the other preferences change nothing (see
// [PvD]).
func (tp *TransportProperties) SetPvD(name string, pref Preference) error {
	return tp.setNamed(PvD, name, pref)
}

func (tp *TransportProperties) setNamed(p Property, name string, pref Preference) error {
	if name == "" || !pref.valid() {
		return &PropertyError{Op: "set", Property: p, Value: pref,
			Err: fmt.Errorf("%w %q=%v: want a non-empty name and a Preference", ErrInvalidPropertyValue, name, pref)}
	}
	cur, _ := tp.lookup(p)
	old, _ := cur.(map[string]Preference)
	m := maps.Clone(old)
	if m == nil {
		m = make(map[string]Preference)
	}
	if pref == NoPreference {
		delete(m, name)
	} else {
		m[name] = pref
	}
	if len(m) == 0 {
		delete(tp.values, p)
		return nil
	}
	tp.store(p, m)
	return nil
}

// Get returns the effective value of p: the value set explicitly, else the
// default. ok is false for unknown and read-only properties. Integers are
// returned as int64, interface and pvd as a fresh map[string]Preference.
//
// Role-dependent defaults (multipath, useTemporaryLocalAddress) are those
// of Initiate unless the properties came from [TransportProperties.ForRole].
// msgOrdered and msgReliable default to what the Connection reads back from
// preserveOrder and reliability; before a Connection exists Get estimates it
// as "the Selection Property is Require or Prefer". msgCapacityProfile
// defaults to connCapacityProfile.
func (tp *TransportProperties) Get(p Property) (any, bool) {
	d := descOf(p)
	if d == nil || d.vt == vtReadOnly {
		return nil, false
	}
	r := roleUnset
	if tp != nil {
		r = tp.role
	}
	return tp.effective(d, r)
}

func (tp *TransportProperties) effective(d *propDesc, r role) (any, bool) {
	if v, ok := tp.lookup(d.name); ok {
		if m, isMap := v.(map[string]Preference); isMap {
			return maps.Clone(m), true
		}
		return v, true
	}
	return tp.defaultValue(d, r)
}

// defaultValue returns the default of d for role r.
func (tp *TransportProperties) defaultValue(d *propDesc, r role) (any, bool) {
	switch d.name {
	case Multipath:
		if r == roleListen {
			return MultipathPassive, true
		}
		return MultipathDisabled, true
	case UseTemporaryLocalAddress:
		if r == roleListen || r == roleRendezvous {
			return Avoid, true
		}
		return Prefer, true
	case MsgOrdered:
		return tp.prefFor(PreserveOrder, r) >= Prefer, true
	case MsgReliable:
		return tp.prefFor(Reliability, r) >= Prefer, true
	case MsgCapacityProfile:
		return tp.effective(propIndex[ConnCapacityProfile], r)
	}
	switch d.rule {
	case defFixed:
		if m, ok := d.def.(map[string]Preference); ok {
			return maps.Clone(m), true
		}
		return d.def, true
	}
	return nil, false
}

func (tp *TransportProperties) prefFor(p Property, r role) Preference {
	d := descOf(p)
	if d == nil || d.vt != vtPreference {
		return NoPreference
	}
	v, _ := tp.effective(d, r)
	pv, _ := v.(Preference)
	return pv
}

// Preference returns the effective preference of a preference-typed
// Selection Property (explicit or default), NoPreference for any other
// property.
func (tp *TransportProperties) Preference(p Property) Preference {
	r := roleUnset
	if tp != nil {
		r = tp.role
	}
	return tp.prefFor(p, r)
}

// IsSet reports whether p was set explicitly (by Set, the preference
// methods, SetInterface, SetPvD or a profile) and not reset by Default.
func (tp *TransportProperties) IsSet(p Property) bool {
	d := descOf(p)
	if d == nil {
		return false
	}
	_, ok := tp.lookup(d.name)
	return ok
}

// Clone returns a deep copy: changes to either do not affect the other.
func (tp *TransportProperties) Clone() *TransportProperties {
	c := &TransportProperties{}
	if tp == nil {
		return c
	}
	c.role = tp.role
	if tp.values != nil {
		c.values = make(map[Property]any, len(tp.values))
		for k, v := range tp.values {
			if m, ok := v.(map[string]Preference); ok {
				v = maps.Clone(m)
			}
			c.values[k] = v
		}
	}
	return c
}

// ForRole returns a copy whose role-dependent defaults are those of a
// Listener (listen) or an initiated Connection (!listen): multipath
// defaults to MultipathPassive or MultipathDisabled, useTemporaryLocalAddress
// to Avoid or Prefer. Explicit values are kept, and IsSet is unchanged.
func (tp *TransportProperties) ForRole(listen bool) *TransportProperties {
	c := tp.Clone()
	c.role = roleOf(listen)
	return c
}

// forRendezvous is ForRole for Rendezvous: multipath Disabled,
// useTemporaryLocalAddress Avoid.
func (tp *TransportProperties) forRendezvous() *TransportProperties {
	c := tp.Clone()
	c.role = roleRendezvous
	return c
}

// Properties returns every known property (including the read-only ones),
// in a stable order: Selection, Connection, Message.
func (tp *TransportProperties) Properties() []Property {
	out := make([]Property, len(propTable))
	for i := range propTable {
		out[i] = propTable[i].name
	}
	return out
}

// Validate reports contradictions that no protocol stack can satisfy,
// detectable before selection (RFC 9623 §3.1), for a Listener (listen) or
// an initiated Connection. The error is a [*PropertyError] wrapping
// [ErrConflictingProperties] naming the first conflict found:
//   - Prohibit reliability with Require perMsgReliability;
//   - msgReliable set to true with Prohibit reliability, or to false with
//     Require reliability and Prohibit perMsgReliability;
//   - msgOrdered set to true with Prohibit preserveOrder;
//   - Require fullChecksumSend with msgChecksumLen set below FullCoverage,
//     Require fullChecksumRecv with recvChecksumLen set below FullCoverage;
//   - Require keepAlive with keepAliveTimeout set to Disabled or longer
//     than connTimeout; Prohibit keepAlive with keepAliveTimeout set;
//   - Prohibit _gotaps.retransmitNotify with
//     _gotaps.retransmitNotifyThreshold set;
//   - Require activeReadBeforeSend when this side cannot read first
//     (initiator, direction UnidirectionalSend) or write first (listener,
//     UnidirectionalReceive);
//   - Require zeroRttMsg for an initiator with direction
//     UnidirectionalReceive;
//   - minSendRate above maxSendRate, minRecvRate above maxRecvRate.
func (tp *TransportProperties) Validate(listen bool) error {
	return tp.validate(roleOf(listen))
}

func (tp *TransportProperties) validate(r role) error {
	pf := func(p Property) Preference { return tp.prefFor(p, r) }
	get := func(p Property) any {
		v, _ := tp.effective(propIndex[p], r)
		return v
	}
	conflict := func(p Property, format string, args ...any) error {
		v, _ := tp.effective(propIndex[p], r)
		return &PropertyError{Op: "validate", Property: p, Value: v,
			Err: fmt.Errorf("%w: "+format, append([]any{ErrConflictingProperties}, args...)...)}
	}

	if pf(Reliability) == Prohibit && pf(PerMsgReliability) == Require {
		return conflict(PerMsgReliability, "Require %s contradicts Prohibit %s", PerMsgReliability, Reliability)
	}
	if v, ok := tp.lookup(MsgReliable); ok {
		if v == true && pf(Reliability) == Prohibit {
			return conflict(MsgReliable, "%s=true contradicts Prohibit %s", MsgReliable, Reliability)
		}
		if v == false && pf(Reliability) == Require && pf(PerMsgReliability) == Prohibit {
			return conflict(MsgReliable, "%s=false needs %s, but %s is Required and %s Prohibited",
				MsgReliable, PerMsgReliability, Reliability, PerMsgReliability)
		}
	}
	if v, ok := tp.lookup(MsgOrdered); ok && v == true && pf(PreserveOrder) == Prohibit {
		return conflict(MsgOrdered, "%s=true contradicts Prohibit %s", MsgOrdered, PreserveOrder)
	}
	if v, ok := tp.lookup(MsgChecksumLen); ok && v != FullCoverage && pf(FullChecksumSend) == Require {
		return conflict(MsgChecksumLen, "%s=%v below FullCoverage contradicts Require %s", MsgChecksumLen, v, FullChecksumSend)
	}
	if v, ok := tp.lookup(RecvChecksumLen); ok && v != FullCoverage && pf(FullChecksumRecv) == Require {
		return conflict(RecvChecksumLen, "%s=%v below FullCoverage contradicts Require %s", RecvChecksumLen, v, FullChecksumRecv)
	}
	if kat, ok := tp.lookup(KeepAliveTimeout); ok {
		switch pf(KeepAlive) {
		case Require:
			if kat == Disabled {
				return conflict(KeepAliveTimeout, "%s=Disabled contradicts Require %s", KeepAliveTimeout, KeepAlive)
			}
			if ct, isDur := get(ConnTimeout).(time.Duration); isDur && kat.(time.Duration) > ct {
				return conflict(KeepAliveTimeout, "%s=%v longer than %s=%v disables keep-alives, contradicting Require %s",
					KeepAliveTimeout, kat, ConnTimeout, ct, KeepAlive)
			}
		case Prohibit:
			if kat != Disabled {
				return conflict(KeepAliveTimeout, "%s=%v contradicts Prohibit %s", KeepAliveTimeout, kat, KeepAlive)
			}
		}
	}
	if th, ok := tp.lookup(RetransmitNotifyThreshold); ok && th != Disabled && pf(RetransmitNotify) == Prohibit {
		return conflict(RetransmitNotifyThreshold, "%s=%v contradicts Prohibit %s", RetransmitNotifyThreshold, th, RetransmitNotify)
	}
	dir, _ := get(Direction).(CommunicationDirection)
	if pf(ActiveReadBeforeSend) == Require {
		if r == roleListen && dir == UnidirectionalReceive {
			return conflict(ActiveReadBeforeSend, "Require %s (listener writes first) contradicts %s=%v",
				ActiveReadBeforeSend, Direction, dir)
		}
		if (r == roleInitiate || r == roleUnset) && dir == UnidirectionalSend {
			return conflict(ActiveReadBeforeSend, "Require %s (initiator reads first) contradicts %s=%v",
				ActiveReadBeforeSend, Direction, dir)
		}
	}
	if pf(ZeroRTTMsg) == Require && r != roleListen && dir == UnidirectionalReceive {
		return conflict(ZeroRTTMsg, "Require %s contradicts %s=%v", ZeroRTTMsg, Direction, dir)
	}
	for _, pair := range [][2]Property{{MinSendRate, MaxSendRate}, {MinRecvRate, MaxRecvRate}} {
		lo, loOK := get(pair[0]).(int64)
		hi, hiOK := get(pair[1]).(int64)
		if loOK && hiOK && lo > hi {
			return conflict(pair[0], "%s=%d above %s=%d", pair[0], lo, pair[1], hi)
		}
	}
	return nil
}
