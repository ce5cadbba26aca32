package stacks

import (
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// nlAttrBytes encodes one netlink attribute, padded.
func nlAttrBytes(typ uint16, data []byte) []byte {
	b := make([]byte, unix.SizeofNlAttr, nlaAlign(unix.SizeofNlAttr+len(data)))
	binary.NativeEndian.PutUint16(b[0:], uint16(unix.SizeofNlAttr+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	return append(b, make([]byte, cap(b)-len(b))...)
}

// TestNlAttrs: attributes are split at their aligned lengths, the nested
// flag is dropped from the type, and a malformed tail ends the list.
func TestNlAttrs(t *testing.T) {
	name := nlAttrBytes(unix.CTRL_ATTR_MCAST_GRP_NAME, []byte("mptcp_pm_events\x00"))
	id := nlAttrBytes(unix.CTRL_ATTR_MCAST_GRP_ID, binary.NativeEndian.AppendUint32(nil, 7))
	nested := nlAttrBytes(unix.CTRL_ATTR_MCAST_GROUPS|unix.NLA_F_NESTED, nlAttrBytes(1|unix.NLA_F_NESTED, append(name, id...)))
	attrs := nlAttrs(append(nested, 0xff, 0xff)) // a tail too short for a header
	require.Len(t, attrs, 1)
	require.Equal(t, uint16(unix.CTRL_ATTR_MCAST_GROUPS), attrs[0].typ)
	groups := nlAttrs(attrs[0].data)
	require.Len(t, groups, 1)
	fields := nlAttrs(groups[0].data)
	require.Len(t, fields, 2)
	require.Equal(t, "mptcp_pm_events\x00", string(fields[0].data))
	require.Equal(t, uint32(7), binary.NativeEndian.Uint32(fields[1].data))
	require.Empty(t, nlAttrs([]byte{8, 0, 1, 0})) // a length beyond the bytes
}

// TestKeepMPTCPEvent: only subflow events count.
func TestKeepMPTCPEvent(t *testing.T) {
	for cmd, want := range map[byte]bool{1: false, 2: false, 3: false, 6: false, 7: false, 10: true, 11: true, 13: true, 15: false} {
		require.Equal(t, want, keepMPTCPEvent(syscall.NetlinkMessage{Data: []byte{cmd, 1, 0, 0}}), "event %d", cmd)
	}
	require.False(t, keepMPTCPEvent(syscall.NetlinkMessage{Data: []byte{10}}), "too short")
}

// TestRouteMonitorClose: Close ends a Next in progress with an error
// wrapping os.ErrClosed (and the readers with it: goleak checks). As root
// the monitor follows the MPTCP path manager's events where the kernel has
// them.
func TestRouteMonitorClose(t *testing.T) {
	m, err := NewRouteMonitor()
	require.NoError(t, err)
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/proc/sys/net/mptcp/enabled"); err == nil {
			require.True(t, m.MPTCPEvents(), "root on an MPTCP kernel joins the path manager's events")
		}
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := m.Next(); err != nil {
				done <- err
				return
			}
		}
	}()
	require.NoError(t, m.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, os.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after Close")
	}
}
