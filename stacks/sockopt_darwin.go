package stacks

import (
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	tcpKeepIdle     = unix.TCP_KEEPALIVE // keep-alive idle time, seconds
	tcpKeepIdleName = "TCP_KEEPALIVE"
	ipTOSCmsgLen    = 4 // IP_TOS control message data length on send (an int)
)

// bindToDevice binds the socket to the interface named iface with
// IP_BOUND_IF / IPV6_BOUND_IF (darwin has no SO_BINDTODEVICE).
func bindToDevice(fd int, network, iface string) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	if strings.HasSuffix(network, "6") {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_BOUND_IF, ifi.Index); err != nil {
			return fmt.Errorf("set IPV6_BOUND_IF: %w", err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BOUND_IF, ifi.Index); err != nil {
		return fmt.Errorf("set IP_BOUND_IF: %w", err)
	}
	return nil
}
