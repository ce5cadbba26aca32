package stacks

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// This file is the pure core of path selection: the RFC 9622 Selection
// Properties that choose network paths rather than protocol stacks
// (interface §6.2.11, pvd §6.2.12, useTemporaryLocalAddress §6.2.13). It
// turns them and the host's interfaces into a PathPlan; the candidate
// planner of the actors applies the plan to each attempt, with the kernel's
// route lookup (LookupRoute) telling which interface an unbound attempt
// would go out of. Stack capabilities are in selection.go.

// Interface kinds: the interface Selection Property accepts them (and their
// aliases, see NetInterface.Matches) as well as interface names.
const (
	KindLoopback = "loopback"
	KindEthernet = "ethernet" // ARPHRD_ETHER that is not Wi-Fi: wired, veth, bridges
	KindWiFi     = "wifi"
	KindCellular = "cellular"
)

// kindAliases maps the normalized spellings the interface property accepts
// for a kind of interface ("Wi-Fi", "WLAN", "Cellular", ...) to the kind.
var kindAliases = map[string]string{
	"loopback": KindLoopback,
	"ethernet": KindEthernet, "wired": KindEthernet,
	"wifi": KindWiFi, "wlan": KindWiFi, "wireless": KindWiFi,
	"cellular": KindCellular, "wwan": KindCellular, "mobile": KindCellular,
}

// interfaceKindOf returns the kind an interface property entry names, if it
// names one ("Wi-Fi" and "wifi" both name KindWiFi).
func interfaceKindOf(spec string) (string, bool) {
	n := strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(spec))
	k, ok := kindAliases[n]
	return k, ok
}

// NetInterface is one network interface as path selection sees it.
type NetInterface struct {
	Name  string
	Index int
	// Up: administratively up and running (carrier).
	Up bool
	// Kind is KindLoopback, KindEthernet, KindWiFi, KindCellular or ""
	// (unknown).
	Kind string
}

// Matches reports whether the interface property entry spec names n: by
// its name (exactly), or by its kind ("loopback", "ethernet"/"wired",
// "wifi"/"Wi-Fi"/"wlan"/"wireless", "cellular"/"wwan"/"mobile", any case).
func (n NetInterface) Matches(spec string) bool {
	if spec == n.Name {
		return true
	}
	k, ok := interfaceKindOf(spec)
	return ok && n.Kind != "" && k == n.Kind
}

// Interfaces enumerates the host's network interfaces (net.Interfaces) with
// their kind.
func Interfaces() ([]NetInterface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]NetInterface, 0, len(ifs))
	for _, ifi := range ifs {
		out = append(out, NetInterface{
			Name:  ifi.Name,
			Index: ifi.Index,
			Up:    ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0,
			Kind:  interfaceKind(ifi.Name, ifi.Flags),
		})
	}
	return out, nil
}

// ErrNoNetworkPath is wrapped by every *PathError: no network path
// satisfies the path Selection Properties.
var ErrNoNetworkPath = errors.New("no network path satisfies the path selection properties")

// ErrPvDUnsupported is wrapped by the *PathError of a Required pvd: this
// system has no Provisioning Domain API (RFC 7556, RFC 8801), so no path
// has a PvD.
var ErrPvDUnsupported = errors.New("provisioning domains are not supported on this system (it has no PvD API)")

// PathError tells why a path Selection Property cannot be satisfied, or why
// an attempt was not made. It unwraps to ErrNoNetworkPath and, when set,
// Err.
type PathError struct {
	// Property is "interface", "pvd" or "useTemporaryLocalAddress".
	Property string
	// Name is the interface or PvD entry, or the attempt's endpoint.
	Name string
	// Reason is a human-readable explanation.
	Reason string
	// Err is an additional cause (ErrPvDUnsupported), or nil.
	Err error
}

func (e *PathError) Error() string {
	s := e.Property
	if e.Name != "" {
		s += fmt.Sprintf(" %q", e.Name)
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrNoNetworkPath and Err.
func (e *PathError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNoNetworkPath, e.Err}
	}
	return []error{ErrNoNetworkPath}
}

// PathPrefs are the path Selection Properties of one establishment.
type PathPrefs struct {
	// Interface is the interface property: interface name or kind ->
	// preference.
	Interface map[string]int8
	// PvD is the pvd property: Provisioning Domain -> preference.
	PvD map[string]int8
	// TemporaryAddress is useTemporaryLocalAddress.
	TemporaryAddress int8
}

// PathPlan is what PlanPaths derives from PathPrefs and the interfaces.
// The zero value imposes nothing.
type PathPlan struct {
	// Required are the up interfaces a Require entry names: every attempt
	// is bound (SO_BINDTODEVICE) to one of them. Empty: no Require.
	Required []string
	// Preferred are the up interfaces a Prefer entry names: attempts bound
	// to each come first, before the attempts the kernel routes.
	Preferred []string
	// TemporaryAddress is useTemporaryLocalAddress.
	TemporaryAddress int8
	entries          map[string]int8 // the interface property without NoPreference
	ifs              []NetInterface
}

// PlanPaths checks the path properties against the interfaces and returns
// the plan. It fails, before any packet, with a *PathError when a Require
// cannot be satisfied: a Required interface entry that names no interface
// that is up, or any Required pvd (nothing has a PvD here). Other pvd
// preferences impose nothing. Several Required interfaces are alternatives:
// an attempt uses one of them. It is pure.
func PlanPaths(p PathPrefs, ifs []NetInterface) (PathPlan, error) {
	for _, name := range sortedKeys(p.PvD) {
		if p.PvD[name] == Require {
			return PathPlan{}, &PathError{Property: "pvd", Name: name,
				Reason: "Require cannot be satisfied", Err: ErrPvDUnsupported}
		}
	}
	plan := PathPlan{TemporaryAddress: p.TemporaryAddress, ifs: ifs, entries: map[string]int8{}}
	var requires []string
	for _, name := range sortedKeys(p.Interface) {
		switch pref := p.Interface[name]; {
		case pref == NoPreference:
			continue
		case pref == Require:
			requires = append(requires, name)
		}
		plan.entries[name] = p.Interface[name]
	}
	for _, ifi := range ifs {
		if !ifi.Up {
			continue
		}
		switch plan.levelOf(ifi) {
		case Require:
			plan.Required = append(plan.Required, ifi.Name)
		case Prefer:
			plan.Preferred = append(plan.Preferred, ifi.Name)
		}
	}
	if len(requires) > 0 && len(plan.Required) == 0 {
		var up []string
		for _, ifi := range ifs {
			if ifi.Up {
				up = append(up, ifi.Name)
			}
		}
		return PathPlan{}, &PathError{Property: "interface", Name: strings.Join(requires, ", "),
			Reason: fmt.Sprintf("Require: no interface that is up matches (up: %s)", strings.Join(up, ", "))}
	}
	if len(plan.Required) > 0 {
		plan.Preferred = nil // every attempt is bound to a Required one
	}
	return plan, nil
}

func sortedKeys(m map[string]int8) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// levelOf is the preference the interface property gives ifi: an entry
// naming it wins over entries naming its kind; of several kind entries the
// most restrictive (lowest) wins.
func (p PathPlan) levelOf(ifi NetInterface) int8 {
	if v, ok := p.entries[ifi.Name]; ok {
		return v
	}
	lvl, found := NoPreference, false
	for spec, v := range p.entries {
		if k, ok := interfaceKindOf(spec); ok && ifi.Kind != "" && k == ifi.Kind && (!found || v < lvl) {
			lvl, found = v, true
		}
	}
	return lvl
}

// Level is the preference the interface property gives the interface
// named ifname (NoPreference when nothing names it).
func (p PathPlan) Level(ifname string) int8 {
	for _, ifi := range p.ifs {
		if ifi.Name == ifname {
			return p.levelOf(ifi)
		}
	}
	if v, ok := p.entries[ifname]; ok {
		return v
	}
	return NoPreference
}

// Allowed reports whether an attempt may go out of the interface named
// ifname: it is not Prohibited and, when interfaces are Required, it is one
// of them.
func (p PathPlan) Allowed(ifname string) bool {
	if len(p.Required) > 0 {
		return slices.Contains(p.Required, ifname)
	}
	return p.Level(ifname) != Prohibit
}

// Constrained reports whether the interface property has entries, so that
// the interface an attempt goes out of matters.
func (p PathPlan) Constrained() bool { return len(p.entries) > 0 }

// Alternatives are the interfaces an attempt the kernel would route out
// of a Prohibited or Avoided interface may be bound to instead: the up,
// non-loopback interfaces other than except that are Allowed, those not
// Avoided first, in interface order.
func (p PathPlan) Alternatives(except string) []string {
	var first, last []string
	for _, ifi := range p.ifs {
		if !ifi.Up || ifi.Kind == KindLoopback || ifi.Name == except || !p.Allowed(ifi.Name) {
			continue
		}
		if p.levelOf(ifi) == Avoid {
			last = append(last, ifi.Name)
		} else {
			first = append(first, ifi.Name)
		}
	}
	return append(first, last...)
}

// ListenInterfaces are the interfaces a passive open binds its listening
// sockets to, one socket each: the Required ones; else, when the interface
// property Prohibits anything (an interface or a kind, whether or not an
// interface it names is up, or exists, now), every up interface that is not
// Prohibited, the loopback included (not nil; empty when none is up). The
// listener follows them on Linux: an interface that comes up later gets
// its socket unless it is Prohibited, one that goes down loses it
// (actors/listen_follow.go); a socket not bound to an interface would take
// a Prohibited interface's traffic once it came up. Else none (nil: one
// socket, not bound, as without the property): Prefer and Avoid do not
// change a passive open.
func (p PathPlan) ListenInterfaces() []string {
	if len(p.Required) > 0 {
		return slices.Clone(p.Required)
	}
	if !slices.Contains(slices.Collect(maps.Values(p.entries)), Prohibit) {
		return nil
	}
	allowed := []string{}
	for _, ifi := range p.ifs {
		if ifi.Up && p.levelOf(ifi) != Prohibit {
			allowed = append(allowed, ifi.Name)
		}
	}
	return allowed
}

// Route is what the kernel's route lookup says about a destination.
type Route struct {
	// Interface is the name of the outgoing interface; Index its index.
	Interface string
	Index     int
	// Local: the destination is an address of this host (an RTN_LOCAL
	// route): the traffic goes through the loopback, whatever interface
	// holds the address.
	Local bool
	// Source is the route's preferred source address (may be invalid).
	Source netip.Addr
	// MTU is the route's MTU: its RTAX_MTU metric, else the MTU of its
	// outgoing interface (0: unknown).
	MTU int
}
