package actors

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// fakeLookup is a host's routing table and addresses for planPaths: a
// route per "dst|iface" (iface "" for the unbound lookup), a source
// address per "dst|iface", and the temporary addresses.
type fakeLookup struct {
	routes  map[string]stacks.Route
	sources map[string]string
	temp    map[string]bool
	calls   *int
}

func (f fakeLookup) route(dst, _ netip.Addr, iface string) (stacks.Route, error) {
	if f.calls != nil {
		*f.calls++
	}
	if r, ok := f.routes[dst.String()+"|"+iface]; ok {
		return r, nil
	}
	return stacks.Route{}, errors.New("network is unreachable")
}

func (f fakeLookup) source(dst netip.AddrPort, _ netip.Addr, iface string, _ int8) (netip.Addr, error) {
	if f.calls != nil {
		*f.calls++
	}
	if s, ok := f.sources[dst.Addr().String()+"|"+iface]; ok {
		return netip.MustParseAddr(s), nil
	}
	return netip.Addr{}, errors.New("network is unreachable")
}

func (f fakeLookup) temporary(a netip.Addr) bool { return f.temp[a.String()] }

// planHost is a host with lo, eth0 (the default route) and wlan0 (a
// second uplink), and a cellular interface that is down.
var planHost = []stacks.NetInterface{
	{Name: "lo", Index: 1, Up: true, Kind: stacks.KindLoopback},
	{Name: "eth0", Index: 2, Up: true, Kind: stacks.KindEthernet},
	{Name: "wlan0", Index: 3, Up: true, Kind: stacks.KindWiFi},
	{Name: "wwan0", Index: 4, Up: false, Kind: stacks.KindCellular},
}

var planRoutes = fakeLookup{
	routes: map[string]stacks.Route{
		"192.0.2.1|":       {Interface: "eth0"},
		"192.0.2.1|eth0":   {Interface: "eth0"},
		"192.0.2.1|wlan0":  {Interface: "wlan0"},
		"198.51.100.1|":    {Interface: "wlan0"},
		"203.0.113.1|":     {Interface: "eth0"}, // only eth0 reaches it
		"203.0.113.1|eth0": {Interface: "eth0"},
		"127.0.0.1|":       {Interface: "lo", Local: true},
		"127.0.0.1|eth0":   {Interface: "eth0"}, // as "ip route get 127.0.0.1 oif eth0" says
		"2001:db8::1|":     {Interface: "eth0"},
	},
	sources: map[string]string{
		"2001:db8::1|":     "2001:db8::aaaa",
		"2001:db8::1|eth0": "2001:db8::aaaa",
		"2001:db8::2|":     "2001:db8::1234",
	},
	temp: map[string]bool{"2001:db8::aaaa": true},
}

func addrs(s ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range s {
		out = append(out, netip.MustParseAddrPort(a))
	}
	return out
}

// describe renders the planned groups: "bind=<iface> via=<iface>
// <local>-><remote>" per target, "-" for none.
func describe(groups []pathGroup) []string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	var out []string
	for _, g := range groups {
		for _, t := range g.targets {
			local := "any"
			if t.local.Addr().IsValid() {
				local = t.local.String()
			}
			remote := t.remote.String()
			if t.unix != "" {
				remote = t.unix
			}
			out = append(out, fmt.Sprintf("bind=%s via=%s %s->%s", dash(g.iface), dash(g.via), local, remote))
		}
	}
	return out
}

func TestPlanPathsTable(t *testing.T) {
	v4 := []remoteAddrs{{label: "a", addrs: addrs("192.0.2.1:80")}}
	tests := []struct {
		name      string
		iface     map[string]int8
		tmp       int8
		locals    []localAddrs
		remotes   []remoteAddrs
		want      []string
		wantErr   string // the PathError's property, or an error's text
		noLookups bool
	}{
		{name: "no path properties: the kernel routes, nothing is looked up",
			remotes: v4, want: []string{"bind=- via=- any->192.0.2.1:80"}, noLookups: true},
		{name: "Require eth0 binds every attempt",
			iface: map[string]int8{"eth0": stacks.Require}, remotes: v4,
			want: []string{"bind=eth0 via=eth0 any->192.0.2.1:80"}},
		{name: "two Required interfaces are two paths",
			iface: map[string]int8{"eth0": stacks.Require, "wifi": stacks.Require}, remotes: v4,
			want: []string{"bind=eth0 via=eth0 any->192.0.2.1:80", "bind=wlan0 via=wlan0 any->192.0.2.1:80"}},
		{name: "Prohibit the routed interface: not made there, offered bound to the other uplink",
			iface: map[string]int8{"eth0": stacks.Prohibit}, remotes: v4,
			want: []string{"bind=wlan0 via=wlan0 any->192.0.2.1:80"}},
		{name: "Prohibit lo: this host's address is not made (no alternative reaches it)",
			iface: map[string]int8{"lo": stacks.Prohibit}, remotes: []remoteAddrs{{addrs: addrs("127.0.0.1:80")}},
			wantErr: "interface"},
		{name: "Prohibit loopback by type",
			iface: map[string]int8{"Loopback": stacks.Prohibit}, remotes: []remoteAddrs{{addrs: addrs("127.0.0.1:80")}},
			wantErr: "interface"},
		{name: "Prohibit with no alternative route",
			iface: map[string]int8{"eth0": stacks.Prohibit}, remotes: []remoteAddrs{{addrs: addrs("203.0.113.1:80")}},
			wantErr: "interface"},
		{name: "Prohibit another interface: routed as usual",
			iface: map[string]int8{"wlan0": stacks.Prohibit}, remotes: v4,
			want: []string{"bind=- via=eth0 any->192.0.2.1:80"}},
		{name: "no route: kept, the attempt reports it",
			iface: map[string]int8{"wlan0": stacks.Prohibit}, remotes: []remoteAddrs{{addrs: addrs("192.0.2.99:80")}},
			want: []string{"bind=- via=- any->192.0.2.99:80"}},
		{name: "Avoid the routed interface: the alternative first, the avoided path last",
			iface: map[string]int8{"eth0": stacks.Avoid}, remotes: v4,
			want: []string{"bind=wlan0 via=wlan0 any->192.0.2.1:80", "bind=- via=eth0 any->192.0.2.1:80"}},
		{name: "Avoid orders whole paths, stable otherwise",
			iface:   map[string]int8{"eth0": stacks.Avoid},
			remotes: []remoteAddrs{{addrs: addrs("192.0.2.1:80")}, {addrs: addrs("198.51.100.1:80")}},
			want: []string{"bind=wlan0 via=wlan0 any->192.0.2.1:80", "bind=- via=wlan0 any->198.51.100.1:80",
				"bind=- via=eth0 any->192.0.2.1:80"}},
		{name: "Prefer wlan0: bound to it first, then what the kernel routes",
			iface: map[string]int8{"wlan0": stacks.Prefer}, remotes: v4,
			want: []string{"bind=wlan0 via=wlan0 any->192.0.2.1:80", "bind=- via=eth0 any->192.0.2.1:80"}},
		{name: "Prefer the routed interface: no duplicate path",
			iface: map[string]int8{"eth0": stacks.Prefer}, remotes: v4,
			want: []string{"bind=eth0 via=eth0 any->192.0.2.1:80"}},
		{name: "Prefer a down interface: nothing bound to it",
			iface: map[string]int8{"cellular": stacks.Prefer}, remotes: v4,
			want: []string{"bind=- via=eth0 any->192.0.2.1:80"}},
		{name: "every local endpoint is a branch, paired by family",
			locals: []localAddrs{
				{label: "l1", addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, iface: "eth0"},
				{label: "l2", addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, port: 4000},
				{label: "l3", addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}},
			},
			remotes: []remoteAddrs{{addrs: addrs("[2001:db8::1]:80", "192.0.2.1:80")}},
			want: []string{"bind=eth0 via=eth0 10.0.0.1:0->192.0.2.1:80", "bind=- via=- 10.0.0.2:4000->192.0.2.1:80",
				"bind=- via=- [2001:db8::5]:0->[2001:db8::1]:80"}},
		{name: "a local endpoint's Prohibited interface makes no attempt; the others do",
			iface: map[string]int8{"eth0": stacks.Prohibit},
			locals: []localAddrs{
				{label: "l1", iface: "eth0"},
				{label: "l2", iface: "wlan0"},
			},
			remotes: v4, want: []string{"bind=wlan0 via=wlan0 any->192.0.2.1:80"}},
		{name: "a local endpoint's interface that is not Required",
			iface:   map[string]int8{"wlan0": stacks.Require},
			locals:  []localAddrs{{label: "l1", iface: "eth0"}},
			remotes: v4, wantErr: "interface"},
		{name: "a local endpoint of the other family only",
			locals:  []localAddrs{{label: "l1", addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}}},
			remotes: v4, wantErr: "no address of the family"},
		{name: "a scoped remote takes its interface; a Required other one excludes it",
			iface:   map[string]int8{"wlan0": stacks.Require},
			remotes: []remoteAddrs{{addrs: addrs("[fe80::1%eth0]:80"), iface: "eth0"}},
			wantErr: "interface"},
		{name: "a scoped remote with a Preferred other interface: its own path only",
			iface:   map[string]int8{"wlan0": stacks.Prefer},
			remotes: []remoteAddrs{{addrs: addrs("[fe80::1%eth0]:80"), iface: "eth0"}},
			want:    []string{"bind=eth0 via=eth0 any->[fe80::1%eth0]:80"}},
		{name: "useTemporaryLocalAddress Require: no IPv4, a temporary source pinned",
			tmp:     stacks.Require,
			remotes: []remoteAddrs{{addrs: addrs("[2001:db8::1]:80", "192.0.2.1:80")}},
			want:    []string{"bind=- via=- [2001:db8::aaaa]:0->[2001:db8::1]:80"}},
		{name: "useTemporaryLocalAddress Require with IPv4 only",
			tmp: stacks.Require, remotes: v4, wantErr: "useTemporaryLocalAddress"},
		{name: "useTemporaryLocalAddress Require without a temporary address",
			tmp: stacks.Require, remotes: []remoteAddrs{{addrs: addrs("[2001:db8::2]:80")}}, wantErr: "useTemporaryLocalAddress"},
		{name: "useTemporaryLocalAddress Require, explicit local address not temporary",
			tmp:     stacks.Require,
			locals:  []localAddrs{{addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}}},
			remotes: []remoteAddrs{{addrs: addrs("[2001:db8::1]:80")}}, wantErr: "useTemporaryLocalAddress"},
		{name: "useTemporaryLocalAddress Prohibit: a public source pinned, IPv4 as usual",
			tmp:     stacks.Prohibit,
			remotes: []remoteAddrs{{addrs: addrs("[2001:db8::2]:80", "192.0.2.1:80")}},
			want:    []string{"bind=- via=- [2001:db8::1234]:0->[2001:db8::2]:80", "bind=- via=- any->192.0.2.1:80"}},
		{name: "useTemporaryLocalAddress Prohibit when the kernel picks a temporary one",
			tmp: stacks.Prohibit, remotes: []remoteAddrs{{addrs: addrs("[2001:db8::1]:80")}}, wantErr: "useTemporaryLocalAddress"},
		{name: "useTemporaryLocalAddress Prefer and Avoid are left to the socket option",
			tmp: stacks.Avoid, remotes: []remoteAddrs{{addrs: addrs("[2001:db8::1]:80")}},
			want: []string{"bind=- via=- any->[2001:db8::1]:80"}, noLookups: true},
		{name: "a Unix path passes through",
			iface:   map[string]int8{"eth0": stacks.Prohibit},
			remotes: []remoteAddrs{{label: "/tmp/s", unix: "/tmp/s", addrs: []netip.AddrPort{{}}}},
			want:    []string{"bind=- via=- any->/tmp/s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := stacks.PlanPaths(stacks.PathPrefs{Interface: tt.iface, TemporaryAddress: tt.tmp}, planHost)
			require.NoError(t, err)
			calls := 0
			look := planRoutes
			look.calls = &calls
			groups, err := planPaths(tt.remotes, tt.locals, plan, look)
			if tt.wantErr != "" {
				require.Error(t, err)
				require.Empty(t, groups)
				var pe *stacks.PathError
				if errors.As(err, &pe) {
					require.Equal(t, tt.wantErr, pe.Property, err.Error())
					require.ErrorIs(t, err, stacks.ErrNoNetworkPath)
				} else {
					require.Contains(t, err.Error(), tt.wantErr)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, describe(groups))
			if tt.noLookups {
				require.Zero(t, calls, "no route or source lookup without path properties")
			}
		})
	}
}

// TestPlanCandidatesFromPaths checks the tree order: paths above stacks
// above derived endpoints.
func TestPlanCandidatesFromPaths(t *testing.T) {
	plan, err := stacks.PlanPaths(stacks.PathPrefs{Interface: map[string]int8{"wlan0": stacks.Prefer}}, planHost)
	require.NoError(t, err)
	groups, err := planPaths([]remoteAddrs{{label: "a", addrs: addrs("192.0.2.1:80")}, {label: "b", addrs: addrs("198.51.100.1:80")}},
		nil, plan, planRoutes)
	require.NoError(t, err)
	s1, s2 := stacks.TCP(), namedStack{stacks.TCP(), "tcp2"}
	var got []string
	for _, c := range planCandidates([]stacks.Stack{s1, s2}, groups) {
		got = append(got, strings.TrimSpace(c.iface+" "+c.stack.Name()+" "+c.remote.String()))
	}
	require.Equal(t, []string{
		"wlan0 tcp 192.0.2.1:80", "wlan0 tcp 198.51.100.1:80", "wlan0 tcp2 192.0.2.1:80", "wlan0 tcp2 198.51.100.1:80",
		"tcp 192.0.2.1:80", "tcp2 192.0.2.1:80", // routed out of eth0 (198.51.100.1 via wlan0 is the bound path's)
	}, got)
}

func TestPlanListen(t *testing.T) {
	lo4 := localAddrs{label: "127.0.0.1", addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	lo6 := localAddrs{label: "::1", addrs: []netip.Addr{netip.MustParseAddr("::1")}, port: 8080}
	tmp6 := localAddrs{addrs: []netip.Addr{netip.MustParseAddr("2001:db8::aaaa")}}
	tests := []struct {
		name    string
		iface   map[string]int8
		tmp     int8
		locals  []localAddrs
		want    []string
		wantErr string
	}{
		{name: "one local endpoint, nothing bound", locals: []localAddrs{lo4}, want: []string{"0 127.0.0.1:0"}},
		{name: "every local endpoint", locals: []localAddrs{lo4, lo6}, want: []string{"0 127.0.0.1:0", "1 [::1]:8080"}},
		{name: "the wildcard", locals: []localAddrs{{port: 80}}, want: []string{"0 invalid AddrPort"}},
		{name: "a local endpoint's interface", locals: []localAddrs{{addrs: lo4.addrs, iface: "lo"}}, want: []string{"0 127.0.0.1:0%lo"}},
		{name: "Require binds to each Required interface", iface: map[string]int8{"lo": stacks.Require, "eth0": stacks.Require},
			locals: []localAddrs{lo4}, want: []string{"0 127.0.0.1:0%lo", "0 127.0.0.1:0%eth0"}},
		{name: "Prohibit binds to every other up interface", iface: map[string]int8{"eth0": stacks.Prohibit},
			locals: []localAddrs{lo4}, want: []string{"0 127.0.0.1:0%lo", "0 127.0.0.1:0%wlan0"}},
		{name: "Prohibit of an interface that is down binds to each up interface", iface: map[string]int8{"wwan0": stacks.Prohibit},
			locals: []localAddrs{lo4}, want: []string{"0 127.0.0.1:0%lo", "0 127.0.0.1:0%eth0", "0 127.0.0.1:0%wlan0"}},
		{name: "Prohibit of a missing interface binds to each up interface", iface: map[string]int8{"nope0": stacks.Prohibit},
			locals: []localAddrs{lo6}, want: []string{"0 [::1]:8080%lo", "0 [::1]:8080%eth0", "0 [::1]:8080%wlan0"}},
		{name: "Prohibit of an interface that is down: the wildcard too", iface: map[string]int8{"wwan0": stacks.Prohibit},
			locals: []localAddrs{{port: 80}}, want: []string{"0 invalid AddrPort%lo", "0 invalid AddrPort%eth0", "0 invalid AddrPort%wlan0"}},
		{name: "only the loopback allowed", iface: map[string]int8{"ethernet": stacks.Prohibit, "wifi": stacks.Prohibit, "cellular": stacks.Prohibit},
			locals: []localAddrs{lo4}, want: []string{"0 127.0.0.1:0%lo"}},
		{name: "Prefer and Avoid change nothing", iface: map[string]int8{"eth0": stacks.Prefer, "lo": stacks.Avoid},
			locals: []localAddrs{lo4}, want: []string{"0 127.0.0.1:0"}},
		{name: "a Prohibited interface of a local endpoint", iface: map[string]int8{"lo": stacks.Prohibit},
			locals: []localAddrs{{addrs: lo4.addrs, iface: "lo"}}, wantErr: "interface"},
		{name: "one endpoint left out, the other listened on", iface: map[string]int8{"lo": stacks.Prohibit},
			locals: []localAddrs{{addrs: lo4.addrs, iface: "lo"}, {addrs: lo6.addrs, port: 8080, iface: "eth0"}},
			want:   []string{"1 [::1]:8080%eth0"}},
		{name: "everything Prohibited", iface: map[string]int8{"lo": stacks.Prohibit, "ethernet": stacks.Prohibit, "wifi": stacks.Prohibit},
			locals: []localAddrs{lo4}, wantErr: "interface"},
		{name: "a Unix path", locals: []localAddrs{{path: "/tmp/x"}}, want: []string{"0 /tmp/x"}},
		{name: "useTemporaryLocalAddress Require: no IPv4", tmp: stacks.Require, locals: []localAddrs{lo4}, wantErr: "useTemporaryLocalAddress"},
		{name: "useTemporaryLocalAddress Require: a temporary address", tmp: stacks.Require, locals: []localAddrs{lo4, tmp6},
			want: []string{"1 [2001:db8::aaaa]:0"}},
		{name: "useTemporaryLocalAddress Prohibit: not a temporary address", tmp: stacks.Prohibit, locals: []localAddrs{tmp6}, wantErr: "useTemporaryLocalAddress"},
		{name: "useTemporaryLocalAddress Avoid (the listener default) checks nothing", tmp: stacks.Avoid, locals: []localAddrs{tmp6, lo4},
			want: []string{"0 [2001:db8::aaaa]:0", "1 127.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := stacks.PlanPaths(stacks.PathPrefs{Interface: tt.iface, TemporaryAddress: tt.tmp}, planHost)
			require.NoError(t, err)
			sites, err := planListen(tt.locals, plan, planRoutes.temporary)
			if tt.wantErr != "" {
				var pe *stacks.PathError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, tt.wantErr, pe.Property)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, s := range sites {
				got = append(got, fmt.Sprintf("%d %s", s.endpoint, s))
			}
			require.Equal(t, tt.want, got)
		})
	}
}
