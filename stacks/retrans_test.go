package stacks

import (
	"github.com/gotaps/gotaps/stacks/stacktest"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRetransmitWatch(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rc := func(total uint32) RetransmitCounts { return RetransmitCounts{Total: total} }
	type step struct {
		ms    int
		total uint32
		fire  bool
		count uint32
	}
	tests := []struct {
		name  string
		w     RetransmitWatch
		steps []step
	}{
		{"disabled", RetransmitWatch{}, []step{{0, 0, false, 0}, {1, 100, false, 0}}},
		{"first reading is the baseline", RetransmitWatch{Threshold: 3}, []step{
			{0, 50, false, 0}, {1, 52, false, 0}, {2, 53, true, 3}, {3, 54, false, 0}, {4, 56, true, 3},
		}},
		{"a jump fires once", RetransmitWatch{Threshold: 3}, []step{{0, 0, false, 0}, {1, 10, true, 10}, {2, 10, false, 0}}},
		{"counter reset restarts the baseline", RetransmitWatch{Threshold: 2}, []step{{0, 5, false, 0}, {1, 1, false, 0}, {2, 3, true, 2}}},
		{"window: slow growth never fires", RetransmitWatch{Threshold: 3, Window: time.Second}, []step{
			{0, 0, false, 0}, {600, 1, false, 0}, {1200, 2, false, 0}, {1800, 3, false, 0}, {2400, 4, false, 0}, {3000, 5, false, 0},
		}},
		{"window: a burst fires", RetransmitWatch{Threshold: 3, Window: time.Second}, []step{
			{0, 0, false, 0}, {600, 1, false, 0}, {1200, 2, false, 0}, {1300, 3, false, 0}, {1400, 5, true, 4},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w
			for i, s := range tt.steps {
				ev, fired := w.Observe(at(s.ms), rc(s.total))
				require.Equal(t, s.fire, fired, "step %d", i)
				require.Equal(t, s.count, ev.Count, "step %d", i)
				if fired {
					require.Equal(t, s.total, ev.Counts.Total)
				}
			}
		})
	}
}

func TestTCPRetransmissionsLoopback(t *testing.T) {
	skipUnlessLinux(t, "TCP_INFO retransmission counters")
	ctx := testCtx(t)
	ln, err := TCP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	defer ln.Close()
	c, err := TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	got, err := c.(Retransmitter).Retransmissions()
	require.NoError(t, err)
	require.Zero(t, got.Total, "no loss on loopback")
	require.NoError(t, c.Close())
	_, err = c.(Retransmitter).Retransmissions()
	require.Error(t, err, "closed transport")
}

// netnsLab is the test's network namespace (stacktest.Netns).
type netnsLab = stacktest.Netns

func newNetnsLab(t *testing.T) *netnsLab { return stacktest.NewNetns(t, "rt", 231) }

// TestTCPRetransmissionNoticeInNetns connects to a listener in a network
// namespace the test creates, then makes the peer silent (a blackhole
// route for our address inside the namespace swallows its ACKs), so the
// sender retransmits: the TCP_INFO counters grow and a RetransmitWatch
// raises its event.
func TestTCPRetransmissionNoticeInNetns(t *testing.T) {
	lab := newNetnsLab(t)
	// Faster retransmission timeouts on this route (best effort).
	_ = exec.Command("ip", "route", "replace", "198.18.231.0/30", "dev", lab.HostIf, "proto", "kernel", "scope", "link", "src", lab.HostIP.String(), "rto_min", "20ms").Run()
	ctx := testCtx(t)
	var ln Listener
	lab.Run(t, func() error {
		var err error
		ln, err = TCP().Listen(ctx, Options{Local: netip.AddrPortFrom(lab.NSIP, 0)})
		return err
	})
	defer ln.Close()
	c, err := TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	defer c.Abort()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Abort()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 10)
	n, err := s.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))

	rt := c.(Retransmitter)
	start, err := rt.Retransmissions()
	require.NoError(t, err)
	watch := RetransmitWatch{Threshold: 3}
	_, fired := watch.Observe(time.Now(), start)
	require.False(t, fired)

	stacktest.IP(t, "-n", lab.NS, "route", "add", "blackhole", lab.HostIP.String()+"/32")
	_, err = c.Write([]byte("anyone there?"))
	require.NoError(t, err)

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(8 * time.Second)
	for {
		select {
		case <-tick.C:
		case <-deadline:
			got, _ := rt.Retransmissions()
			t.Fatalf("no excessive-retransmission event: counters %+v (start %+v)", got, start)
		}
		got, err := rt.Retransmissions()
		require.NoError(t, err)
		if ev, ok := watch.Observe(time.Now(), got); ok {
			t.Logf("event after retransmissions: %+v", ev)
			require.GreaterOrEqual(t, ev.Count, uint32(3))
			require.GreaterOrEqual(t, got.Total, start.Total+3)
			require.NotZero(t, got.Consecutive, "the oldest segment is being retransmitted on timeout")
			return
		}
	}
}
