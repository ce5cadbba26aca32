package stacks

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// testIfs is a host with a loopback, a wired, a Wi-Fi and a cellular
// interface, and a wired one that is down.
var testIfs = []NetInterface{
	{Name: "lo", Index: 1, Up: true, Kind: KindLoopback},
	{Name: "eth0", Index: 2, Up: true, Kind: KindEthernet},
	{Name: "wlan0", Index: 3, Up: true, Kind: KindWiFi},
	{Name: "wwan0", Index: 4, Up: true, Kind: KindCellular},
	{Name: "eth1", Index: 5, Up: false, Kind: KindEthernet},
}

func TestNetInterfaceMatches(t *testing.T) {
	tests := []struct {
		spec string
		ifi  NetInterface
		want bool
	}{
		{"eth0", testIfs[1], true},
		{"eth1", testIfs[1], false},
		{"Wi-Fi", testIfs[2], true},
		{"WLAN", testIfs[2], true},
		{"wifi", testIfs[1], false},
		{"Cellular", testIfs[3], true},
		{"wired", testIfs[1], true},
		{"Ethernet", testIfs[4], true},
		{"loopback", testIfs[0], true},
		{"Loopback", testIfs[1], false},
		{"wifi", NetInterface{Name: "x"}, false}, // unknown kind matches no kind
		{"ETH0", testIfs[1], false},              // names are exact
	}
	for i, tt := range tests {
		require.Equal(t, tt.want, tt.ifi.Matches(tt.spec), "#%d %q %s", i, tt.spec, tt.ifi.Name)
	}
}

func TestPlanPaths(t *testing.T) {
	type want struct {
		required, preferred []string
		levels              map[string]int8 // interface -> Level
		allowed             map[string]bool
		alternatives        []string // Alternatives("eth0")
		listen              []string // ListenInterfaces
		constrained         bool
	}
	tests := []struct {
		name    string
		prefs   PathPrefs
		want    want
		wantErr error // nil: no error
	}{
		{name: "nothing: no constraint, one unbound listener",
			prefs: PathPrefs{},
			want: want{allowed: map[string]bool{"eth0": true, "lo": true},
				alternatives: []string{"wlan0", "wwan0"}}},
		{name: "Require by name",
			prefs: PathPrefs{Interface: map[string]int8{"wlan0": Require}},
			want: want{required: []string{"wlan0"}, constrained: true,
				allowed: map[string]bool{"wlan0": true, "eth0": false, "lo": false},
				levels:  map[string]int8{"wlan0": Require, "eth0": NoPreference},
				listen:  []string{"wlan0"}, alternatives: []string{"wlan0"}}},
		{name: "Require by type: every up interface of it",
			prefs: PathPrefs{Interface: map[string]int8{"Ethernet": Require}},
			want: want{required: []string{"eth0"}, constrained: true, listen: []string{"eth0"},
				allowed: map[string]bool{"eth0": true, "eth1": false}}},
		{name: "two Requires are alternatives",
			prefs: PathPrefs{Interface: map[string]int8{"wlan0": Require, "lo": Require}},
			want:  want{required: []string{"lo", "wlan0"}, constrained: true, listen: []string{"lo", "wlan0"}}},
		{name: "Require of an interface that is down fails",
			prefs:   PathPrefs{Interface: map[string]int8{"eth1": Require}},
			wantErr: ErrNoNetworkPath},
		{name: "Require of a missing interface fails",
			prefs:   PathPrefs{Interface: map[string]int8{"nope0": Require}},
			wantErr: ErrNoNetworkPath},
		{name: "Require of a type only a down interface has fails",
			prefs:   PathPrefs{Interface: map[string]int8{"wired": Require, "eth0": Prohibit}},
			wantErr: ErrNoNetworkPath},
		{name: "Prohibit by type",
			prefs: PathPrefs{Interface: map[string]int8{"cellular": Prohibit}},
			want: want{constrained: true,
				allowed:      map[string]bool{"wwan0": false, "eth0": true},
				levels:       map[string]int8{"wwan0": Prohibit, "eth0": NoPreference},
				alternatives: []string{"wlan0"},
				listen:       []string{"lo", "eth0", "wlan0"}}},
		{name: "a name entry wins over its type",
			prefs: PathPrefs{Interface: map[string]int8{"wifi": Prohibit, "wlan0": Prefer}},
			want: want{preferred: []string{"wlan0"}, constrained: true,
				allowed: map[string]bool{"wlan0": true},
				levels:  map[string]int8{"wlan0": Prefer},
				// a Wi-Fi interface added later is Prohibited: listen on each up one
				listen: []string{"lo", "eth0", "wlan0", "wwan0"}}},
		{name: "Prohibit of an interface that is down: listen on each up one",
			prefs: PathPrefs{Interface: map[string]int8{"eth1": Prohibit}},
			want: want{constrained: true, allowed: map[string]bool{"eth1": false, "eth0": true},
				listen: []string{"lo", "eth0", "wlan0", "wwan0"}}},
		{name: "Prohibit of a missing interface: listen on each up one",
			prefs: PathPrefs{Interface: map[string]int8{"nope0": Prohibit}},
			want:  want{constrained: true, listen: []string{"lo", "eth0", "wlan0", "wwan0"}}},
		{name: "Prohibit and Require: the Required ones",
			prefs: PathPrefs{Interface: map[string]int8{"eth1": Prohibit, "wlan0": Require}},
			want:  want{required: []string{"wlan0"}, constrained: true, listen: []string{"wlan0"}}},
		{name: "Prefer and Avoid: preferred bound first, avoided alternatives last",
			prefs: PathPrefs{Interface: map[string]int8{"eth0": Prefer, "wlan0": Avoid}},
			want: want{preferred: []string{"eth0"}, constrained: true,
				levels:       map[string]int8{"eth0": Prefer, "wlan0": Avoid, "wwan0": NoPreference},
				allowed:      map[string]bool{"eth0": true, "wlan0": true},
				alternatives: []string{"wwan0", "wlan0"}}},
		{name: "Prefer of a missing interface is fine",
			prefs: PathPrefs{Interface: map[string]int8{"nope0": Prefer}},
			want:  want{constrained: true}},
		{name: "NoPreference entries are ignored",
			prefs: PathPrefs{Interface: map[string]int8{"nope0": NoPreference}},
			want:  want{}},
		{name: "pvd Require cannot be satisfied",
			prefs:   PathPrefs{PvD: map[string]int8{"pvd.example.org": Require}},
			wantErr: ErrPvDUnsupported},
		{name: "pvd Prefer, Avoid, Prohibit change nothing",
			prefs: PathPrefs{PvD: map[string]int8{"a": Prefer, "b": Avoid, "c": Prohibit}},
			want:  want{allowed: map[string]bool{"eth0": true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := PlanPaths(tt.prefs, testIfs)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.ErrorIs(t, err, ErrNoNetworkPath)
				var pe *PathError
				require.ErrorAs(t, err, &pe)
				require.NotEmpty(t, pe.Reason)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want.required, plan.Required)
			require.Equal(t, tt.want.preferred, plan.Preferred)
			require.Equal(t, tt.want.constrained, plan.Constrained())
			for name, lvl := range tt.want.levels {
				require.Equal(t, lvl, plan.Level(name), "Level(%s)", name)
			}
			for name, ok := range tt.want.allowed {
				require.Equal(t, ok, plan.Allowed(name), "Allowed(%s)", name)
			}
			if tt.want.alternatives != nil {
				require.Equal(t, tt.want.alternatives, plan.Alternatives("eth0"))
			}
			require.Equal(t, tt.want.listen, plan.ListenInterfaces())
		})
	}
}

func TestPlanPathsEverythingProhibited(t *testing.T) {
	plan, err := PlanPaths(PathPrefs{Interface: map[string]int8{"lo": Prohibit, "ethernet": Prohibit,
		"wifi": Prohibit, "cellular": Prohibit}}, testIfs)
	require.NoError(t, err)
	require.NotNil(t, plan.ListenInterfaces())
	require.Empty(t, plan.ListenInterfaces(), "nothing left to listen on")
}

func TestListenInterfacesOnlyLoopbackAllowed(t *testing.T) {
	plan, err := PlanPaths(PathPrefs{Interface: map[string]int8{"ethernet": Prohibit, "eth9": Prohibit}},
		[]NetInterface{{Name: "lo", Up: true, Kind: KindLoopback}, {Name: "eth0", Up: false, Kind: KindEthernet}})
	require.NoError(t, err)
	require.Equal(t, []string{"lo"}, plan.ListenInterfaces(), "the loopback is an interface like the others")
	plan, err = PlanPaths(PathPrefs{Interface: map[string]int8{"eth0": Prohibit}},
		[]NetInterface{{Name: "lo", Up: false, Kind: KindLoopback}, {Name: "eth0", Up: false, Kind: KindEthernet}})
	require.NoError(t, err)
	require.NotNil(t, plan.ListenInterfaces())
	require.Empty(t, plan.ListenInterfaces(), "nothing up: nothing to listen on, not the wildcard")
}

func TestInterfacesHasLoopback(t *testing.T) {
	ifs, err := Interfaces()
	require.NoError(t, err)
	var lo *NetInterface
	for i := range ifs {
		if ifs[i].Name == "lo" {
			lo = &ifs[i]
		}
	}
	require.NotNil(t, lo, "this host has no lo")
	require.True(t, lo.Up)
	require.Equal(t, KindLoopback, lo.Kind)
	require.True(t, lo.Matches("loopback"))
}

func TestPathErrorUnwrap(t *testing.T) {
	e := &PathError{Property: "pvd", Name: "x", Reason: "Require cannot be satisfied", Err: ErrPvDUnsupported}
	require.ErrorIs(t, e, ErrNoNetworkPath)
	require.ErrorIs(t, e, ErrPvDUnsupported)
	require.Contains(t, e.Error(), `pvd "x"`)
	require.False(t, errors.Is(&PathError{Property: "interface"}, ErrPvDUnsupported))
}
