package stacks

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Preference levels as RFC 9622 §6.2 defines them (the seed's values).
const (
	Prohibit     int8 = -2
	Avoid        int8 = -1
	NoPreference int8 = 0
	Prefer       int8 = 1
	Require      int8 = 2
)

// ErrNoStack is wrapped by *UnfulfilledError.
var ErrNoStack = errors.New("no protocol stack satisfies the transport properties")

// UnfulfilledError tells, per stack, why it was ruled out.
type UnfulfilledError struct {
	Reasons []string
}

func (e *UnfulfilledError) Error() string {
	if len(e.Reasons) == 0 {
		return ErrNoStack.Error()
	}
	return ErrNoStack.Error() + ": " + strings.Join(e.Reasons, "; ")
}

func (e *UnfulfilledError) Unwrap() error { return ErrNoStack }

// Has reports whether the capabilities provide the RFC 9622 selection
// property named prop ("reliability", "preserveMsgBoundaries", ...; the
// pseudo-property "secure" is the Secure capability, "multipathProtocol"
// the Multipath one). known is false for a property that does not select
// protocols.
//
// The path properties interface, pvd and useTemporaryLocalAddress, and
// multipath and advertisesAltaddr, are known not to be stack capabilities:
// PlanPaths applies the path ones to each attempt; the multipath mode is
// Options.MPTCP, and Active ranks stacks by the pseudo-property
// "multipathProtocol" (Prefer) since RFC 9622 §6.2.14 does not make it a
// requirement; advertisesAltaddr is decided by the kernel's path manager.
// activeReadBeforeSend is the ActiveReadBeforeSend capability, which Select
// only Requires or Prefers (an Avoid or Prohibit asks for nothing a stack
// could lack), and so are keepAlive, zeroRttMsg, softErrorNotify,
// perMsgReliability and _gotaps.retransmitNotify theirs (optInFeature).
func (c Capabilities) Has(prop string) (has, known bool) {
	switch prop {
	case "multipathProtocol":
		return c.Multipath, true
	case "interface", "pvd", "useTemporaryLocalAddress", "multipath", "advertisesAltaddr":
		return false, false
	case "reliability":
		return c.Reliability, true
	case "preserveOrder":
		return c.PreserveOrder, true
	case "congestionControl":
		return c.CongestionControl, true
	case "preserveMsgBoundaries":
		return c.PreserveMsgBoundaries, true
	case "perMsgReliability":
		return c.PerMsgReliability, true
	case "multistreaming":
		return c.Multistreaming, true
	case "zeroRttMsg":
		return c.ZeroRTTMsg, true
	case "fullChecksumSend":
		return c.FullChecksumSend, true
	case "fullChecksumRecv":
		return c.FullChecksumRecv, true
	case "keepAlive":
		return c.KeepAlive, true
	case "softErrorNotify":
		return c.SoftErrorNotify, true
	case "secure":
		return c.Secure, true
	case "activeReadBeforeSend":
		return c.ActiveReadBeforeSend, true
	case "_gotaps.retransmitNotify":
		// only a TCP socket reports its retransmissions (TCP_INFO): TCP and
		// TLS, the reliable single-stream stacks with TCP keep-alives
		// (QUIC multistreams, Unix sockets have no keep-alive)
		return c.Reliability && c.KeepAlive && !c.Multistreaming, true
	}
	return false, false
}

// optInFeature reports whether the selection property named prop is a
// feature a stack that has it uses only when asked to, so that Avoid or
// Prohibit asks for nothing such a stack could lack: it is then met by
// not using it, and the stack is selected with the feature off (the
// caller must then keep it off):
//
//   - activeReadBeforeSend: Avoid or Prohibit says this side will not
//     read first, and a stack that lets either side write first does that
//     too;
//   - keepAlive: whether the Connection sends keep-alives (RFC 9622
//     §6.2.10), which TCP, TLS and QUIC do only when keepAlive is
//     Preferred or Required or keepAliveTimeout is set (Options.KeepAlive;
//     a keepAliveTimeout with Prohibit keepAlive is a conflict);
//   - zeroRttMsg: QUIC sends 0-RTT data only for a safely replayable first
//     Message (Options.EarlyData), and a QUIC Listener refuses it with
//     Options.NoEarlyData;
//   - softErrorNotify: UDP and UDP-Lite deliver ICMP errors only with
//     Options.SoftErrors, and swallow them otherwise;
//   - perMsgReliability: QUIC sends unreliable messages (datagrams) only
//     with Options.QUICDatagrams;
//   - _gotaps.retransmitNotify: TCP and TLS report retransmissions only
//     when it is Preferred or Required (and a threshold is set).
//
// So Prohibit of one of them leaves QUIC (or UDP and UDP-Lite, or TCP
// and TLS) in, and
// Avoid does not rank them last. The properties a stack provides by its nature (reliability, preserveOrder,
// congestionControl, preserveMsgBoundaries, fullChecksumSend/Recv,
// multistreaming: a QUIC Clone is a stream of the session) still rule it
// out.
func optInFeature(prop string) bool {
	switch prop {
	case "activeReadBeforeSend", "keepAlive", "zeroRttMsg", "softErrorNotify", "perMsgReliability",
		"_gotaps.retransmitNotify":
		return true
	}
	return false
}

// Select applies the RFC 9622 selection rules (RFC 9623 §4.1.3) to the
// stacks: drop every stack that has a Prohibited feature, keep only stacks
// with every Required feature, then rank by the number of Preferred
// features they have (more first) and, as tie-breaker, by the number of
// Avoided features (fewer first); equal stacks keep their order. An Avoided
// or Prohibited optInFeature counts for nothing. prefs maps
// property names to preference levels. It is pure.
func Select(all []Stack, prefs map[string]int8) ([]Stack, error) {
	type ranked struct {
		s             Stack
		prefer, avoid int
		order         int
	}
	names := make([]string, 0, len(prefs))
	for n := range prefs {
		names = append(names, n)
	}
	sort.Strings(names)
	var keep []ranked
	var reasons []string
	for i, s := range all {
		caps := s.Capabilities()
		r := ranked{s: s, order: i}
		ok := true
		for _, n := range names {
			has, known := caps.Has(n)
			if !known {
				continue
			}
			level := prefs[n]
			if optInFeature(n) && level < NoPreference {
				level = NoPreference
			}
			switch level {
			case Require:
				if !has {
					reasons = append(reasons, fmt.Sprintf("%s lacks required %s", s.Name(), n))
					ok = false
				}
			case Prohibit:
				if has {
					reasons = append(reasons, fmt.Sprintf("%s provides prohibited %s", s.Name(), n))
					ok = false
				}
			case Prefer:
				if has {
					r.prefer++
				}
			case Avoid:
				if has {
					r.avoid++
				}
			}
		}
		if ok {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 {
		return nil, &UnfulfilledError{Reasons: reasons}
	}
	sort.SliceStable(keep, func(i, j int) bool {
		if keep[i].prefer != keep[j].prefer {
			return keep[i].prefer > keep[j].prefer
		}
		return keep[i].avoid < keep[j].avoid
	})
	out := make([]Stack, len(keep))
	for i, r := range keep {
		out[i] = r.s
	}
	return out, nil
}
