package stacks

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/require"
)

// rfcDefaults are the RFC 9622 §6.2 defaults of the selection properties
// that tell stacks apart.
var rfcDefaults = map[string]int8{
	"reliability":           Require,
	"preserveOrder":         Require,
	"congestionControl":     Require,
	"fullChecksumSend":      Require,
	"fullChecksumRecv":      Require,
	"multistreaming":        Prefer,
	"preserveMsgBoundaries": NoPreference,
	"zeroRttMsg":            NoPreference,
	"keepAlive":             NoPreference,
}

// with returns the RFC defaults overridden by over (a profile, RFC 9622
// App. B.2, or single settings).
func with(over map[string]int8) map[string]int8 {
	m := maps.Clone(rfcDefaults)
	maps.Copy(m, over)
	return m
}

var (
	reliableInorderStream = map[string]int8{"reliability": Require, "preserveOrder": Require, "congestionControl": Require, "preserveMsgBoundaries": NoPreference}
	reliableMessage       = map[string]int8{"reliability": Require, "preserveOrder": Require, "congestionControl": Require, "preserveMsgBoundaries": Require}
	unreliableDatagram    = map[string]int8{"reliability": Avoid, "preserveOrder": Avoid, "congestionControl": NoPreference, "preserveMsgBoundaries": Require}
)

func TestSelectProfiles(t *testing.T) {
	tests := []struct {
		name  string
		prefs map[string]int8
		want  []string // nil: *UnfulfilledError
	}{
		{"RFC defaults rule out UDP; multistreaming Prefer puts QUIC first", rfcDefaults, []string{"quic", "tcp", "tls"}},
		{"defaults without security", with(map[string]int8{"secure": Prohibit}), []string{"tcp"}},
		{"defaults, secure required", with(map[string]int8{"secure": Require}), []string{"quic", "tls"}},
		{"reliable-inorder-stream", with(reliableInorderStream), []string{"quic", "tcp", "tls"}},
		{"reliable-inorder-stream, secure, no multistreaming", with(map[string]int8{"secure": Require, "multistreaming": NoPreference}), []string{"tls", "quic"}},
		{"reliable-message: no stack keeps boundaries reliably", with(reliableMessage), nil},
		{"unreliable-datagram picks udp", with(unreliableDatagram), []string{"udp"}},
		{"unreliable-datagram on bare prefs (no fullChecksum Require: UDP-Lite qualifies, after UDP)", unreliableDatagram, []string{"udp", "udplite"}},
		{"unreliable-datagram but secure required", with(map[string]int8{"reliability": Avoid, "preserveOrder": Avoid, "congestionControl": NoPreference, "preserveMsgBoundaries": Require, "secure": Require}), nil},
		{"datagram-ish without boundaries: UDP ranks first by Avoid", map[string]int8{"reliability": Avoid, "preserveOrder": Avoid}, []string{"udp", "udplite", "tcp", "tls", "quic"}},
		{"prefer zero-RTT", with(map[string]int8{"zeroRttMsg": Prefer, "multistreaming": NoPreference}), []string{"quic", "tcp", "tls"}},
		{"prohibit multistreaming", with(map[string]int8{"multistreaming": Prohibit}), []string{"tcp", "tls"}},
		{"require keepAlive", with(map[string]int8{"keepAlive": Require, "secure": Prohibit}), []string{"tcp"}},
		{"prohibit keepAlive rules nothing out: keep-alives are sent only when asked for", with(map[string]int8{"keepAlive": Prohibit}), []string{"quic", "tcp", "tls"}},
		{"avoid keepAlive ranks nothing lower", with(map[string]int8{"keepAlive": Avoid, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
		{"prohibit zeroRttMsg rules nothing out: QUIC sends 0-RTT only when asked for", with(map[string]int8{"zeroRttMsg": Prohibit}), []string{"quic", "tcp", "tls"}},
		{"prohibit zeroRttMsg, QUIC only", with(map[string]int8{"zeroRttMsg": Prohibit, "multistreaming": Require}), []string{"quic"}},
		{"avoid zeroRttMsg ranks nothing lower", with(map[string]int8{"zeroRttMsg": Avoid}), []string{"quic", "tcp", "tls"}},
		{"require zeroRttMsg leaves QUIC", with(map[string]int8{"zeroRttMsg": Require}), []string{"quic"}},
		{"require zeroRttMsg without security: no stack", with(map[string]int8{"zeroRttMsg": Require, "secure": Prohibit}), nil},
		{"prohibit softErrorNotify keeps UDP: ICMP errors are delivered only when asked for", with(map[string]int8{"softErrorNotify": Prohibit,
			"reliability": Avoid, "preserveOrder": Avoid, "congestionControl": NoPreference, "preserveMsgBoundaries": Require}), []string{"udp"}},
		{"avoid softErrorNotify does not rank UDP last", map[string]int8{"softErrorNotify": Avoid, "reliability": Avoid}, []string{"udp", "udplite", "tcp", "tls", "quic"}},
		{"prohibit perMsgReliability keeps QUIC: datagrams only when asked for", with(map[string]int8{"perMsgReliability": Prohibit}), []string{"quic", "tcp", "tls"}},
		{"prohibit perMsgReliability, QUIC only", with(map[string]int8{"perMsgReliability": Prohibit, "multistreaming": Require}), []string{"quic"}},
		{"avoid perMsgReliability ranks nothing lower", with(map[string]int8{"perMsgReliability": Avoid, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
		{"prefer perMsgReliability ranks QUIC first", with(map[string]int8{"perMsgReliability": Prefer, "multistreaming": NoPreference}), []string{"quic", "tcp", "tls"}},
		{"require perMsgReliability leaves QUIC", with(map[string]int8{"perMsgReliability": Require}), []string{"quic"}},
		{"contradiction: prohibit reliability, require perMsgReliability", with(map[string]int8{"reliability": Prohibit, "perMsgReliability": Require}), nil},
		{"prohibit reliability (inherent) rules out every reliable stack", map[string]int8{"reliability": Prohibit}, []string{"udp", "udplite"}},
		{"prohibit preserveOrder (inherent)", map[string]int8{"preserveOrder": Prohibit}, []string{"udp", "udplite"}},
		{"prohibit congestionControl (inherent): TCP, TLS, QUIC cannot turn it off", map[string]int8{"congestionControl": Prohibit}, []string{"udp", "udplite"}},
		{"avoid congestionControl ranks UDP first", map[string]int8{"congestionControl": Avoid}, []string{"udp", "udplite", "tcp", "tls", "quic"}},
		{"prohibit preserveMsgBoundaries (inherent) rules out UDP", map[string]int8{"preserveMsgBoundaries": Prohibit}, []string{"tcp", "tls", "quic"}},
		{"prefer preserveMsgBoundaries ranks UDP first", map[string]int8{"preserveMsgBoundaries": Prefer}, []string{"udp", "udplite", "tcp", "tls", "quic"}},
		{"prohibit fullChecksumSend leaves UDP-Lite (coverage can be lowered)", map[string]int8{"fullChecksumSend": Prohibit}, []string{"udplite"}},
		{"prohibit fullChecksumRecv leaves UDP-Lite", map[string]int8{"fullChecksumRecv": Prohibit}, []string{"udplite"}},
		{"avoid fullChecksumSend ranks UDP-Lite first", map[string]int8{"fullChecksumSend": Avoid}, []string{"udplite", "tcp", "tls", "quic", "udp"}},
		{"avoid multistreaming ranks QUIC last", with(map[string]int8{"multistreaming": Avoid}), []string{"tcp", "tls", "quic"}},
		{"contradiction: prohibit reliability, require order", map[string]int8{"reliability": Prohibit, "preserveOrder": Require}, nil},
		{"contradiction: require multistreaming, prohibit secure", with(map[string]int8{"multistreaming": Require, "secure": Prohibit}), nil},
		{"unknown properties do not select", with(map[string]int8{"direction": Require, "_gotaps.x": Require}), []string{"quic", "tcp", "tls"}},
		{"require retransmitNotify: only TCP and TLS report retransmissions", with(map[string]int8{"_gotaps.retransmitNotify": Require}), []string{"tcp", "tls"}},
		{"require activeReadBeforeSend: a QUIC stream is seen only with its first data", with(map[string]int8{"activeReadBeforeSend": Require}), []string{"tcp", "tls"}},
		{"prefer activeReadBeforeSend outranks multistreaming", with(map[string]int8{"activeReadBeforeSend": Prefer, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
		{"prohibit activeReadBeforeSend rules nothing out", with(map[string]int8{"activeReadBeforeSend": Prohibit}), []string{"quic", "tcp", "tls"}},
		{"avoid activeReadBeforeSend ranks nothing lower (counted, QUIC would come first)", with(map[string]int8{"activeReadBeforeSend": Avoid, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
		{"unreliable-datagram with activeReadBeforeSend required: a UDP listener sees a peer only with its first datagram", with(map[string]int8{"reliability": Avoid, "preserveOrder": Avoid, "congestionControl": NoPreference, "preserveMsgBoundaries": Require, "activeReadBeforeSend": Require}), nil},
		{"require retransmitNotify on unreliable-datagram: UDP is rejected", with(map[string]int8{"reliability": Avoid, "preserveOrder": Avoid, "congestionControl": NoPreference, "preserveMsgBoundaries": Require, "_gotaps.retransmitNotify": Require}), nil},
		{"prohibit retransmitNotify rules nothing out: TCP reports retransmissions only when asked for", with(map[string]int8{"_gotaps.retransmitNotify": Prohibit}), []string{"quic", "tcp", "tls"}},
		{"prohibit retransmitNotify without security keeps TCP", with(map[string]int8{"_gotaps.retransmitNotify": Prohibit, "secure": Prohibit}), []string{"tcp"}},
		{"avoid retransmitNotify ranks nothing lower", with(map[string]int8{"_gotaps.retransmitNotify": Avoid, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
		{"prefer retransmitNotify ranks TCP first", with(map[string]int8{"_gotaps.retransmitNotify": Prefer, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
		{"path and multipath properties are not stack capabilities", with(map[string]int8{"interface": Require, "pvd": Require,
			"useTemporaryLocalAddress": Require, "multipath": Require, "advertisesAltaddr": Require}), []string{"quic", "tcp", "tls"}},
		{"multipath Active (multipathProtocol Prefer) ties MPTCP-capable stacks with multistreaming QUIC", with(map[string]int8{"multipathProtocol": Prefer}), []string{"tcp", "tls", "quic"}},
		{"multipath Active, secure required: TLS over MPTCP before QUIC", with(map[string]int8{"multipathProtocol": Prefer, "secure": Require}), []string{"tls", "quic"}},
		{"multipath Active, no multistreaming preference: MPTCP-capable only first", with(map[string]int8{"multipathProtocol": Prefer, "multistreaming": NoPreference}), []string{"tcp", "tls", "quic"}},
	}
	for i, tt := range tests {
		got, err := Select(All(), tt.prefs)
		if tt.want == nil {
			var ue *UnfulfilledError
			require.ErrorAs(t, err, &ue, "#%d %s", i, tt.name)
			require.ErrorIs(t, err, ErrNoStack)
			require.NotEmpty(t, ue.Reasons)
			continue
		}
		require.NoError(t, err, "#%d %s", i, tt.name)
		var names []string
		for _, s := range got {
			names = append(names, s.Name())
		}
		require.Equal(t, tt.want, names, "#%d %s", i, tt.name)
	}
}

func TestCapabilitiesPerStack(t *testing.T) {
	for _, s := range append(All(), Unix()) {
		c := s.Capabilities()
		switch s.Name() {
		case "udp", "udplite":
			require.True(t, c.PreserveMsgBoundaries)
			require.False(t, c.Reliability || c.PreserveOrder || c.CongestionControl || c.Secure)
		case "tls", "quic":
			require.True(t, c.Secure && c.Reliability && c.PreserveOrder && c.CongestionControl)
		default:
			require.True(t, c.Reliability && c.PreserveOrder)
			require.False(t, c.Secure || c.PreserveMsgBoundaries)
		}
	}
}

// TestRetransmitNotifyCapability: Has answers _gotaps.retransmitNotify
// for the stacks over a TCP socket only.
func TestRetransmitNotifyCapability(t *testing.T) {
	want := map[string]bool{"tcp": true, "tls": true, "quic": false, "udp": false, "udplite": false, "unix": false}
	for _, s := range append(All(), Unix()) {
		has, known := s.Capabilities().Has("_gotaps.retransmitNotify")
		require.True(t, known, s.Name())
		require.Equal(t, want[s.Name()], has, s.Name())
	}
}
