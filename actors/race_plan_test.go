package actors

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
)

func TestClampAttemptDelay(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, 250 * time.Millisecond},
		{time.Nanosecond, 10 * time.Millisecond},
		{9 * time.Millisecond, 10 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
		{3 * time.Second, 2 * time.Second},
	}
	for i, tt := range tests {
		if got := ClampAttemptDelay(tt.in); got != tt.want {
			t.Errorf("#%d: got %v; want %v", i, got, tt.want)
		}
	}
}

func TestPlanCandidatesOrder(t *testing.T) {
	a6 := netip.MustParseAddrPort("[::1]:80")
	a4 := netip.MustParseAddrPort("127.0.0.1:80")
	b4 := netip.MustParseAddrPort("127.0.0.2:80")
	got := planCandidates([]stacks.Stack{stacks.TCP()}, []remoteAddrs{
		{label: "a", addrs: []netip.AddrPort{a6, a4}},
		{label: "b", addrs: []netip.AddrPort{b4}},
	}, netip.AddrPort{})
	want := []netip.AddrPort{a6, b4, a4}
	if len(got) != len(want) {
		t.Fatalf("got %d candidates; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].remote != want[i] {
			t.Errorf("#%d: got %v; want %v", i, got[i].remote, want[i])
		}
	}
	if got := planCandidates(nil, nil, netip.AddrPort{}); len(got) != 0 {
		t.Errorf("empty plan has %d candidates", len(got))
	}
}
