package stacks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Windows has no UDP-Lite: the stack's Dial and Listen, and a UDP-Lite
// rendezvous socket, fail with ErrUDPLiteUnsupported wrapping
// errors.ErrUnsupported.

var errUDPLiteWindows = fmt.Errorf("%w: %w on windows", ErrUDPLiteUnsupported, errors.ErrUnsupported)

func udpLiteSocket(netip.Addr, netip.AddrPort, Options) (int, error) { return -1, errUDPLiteWindows }

func (udpLiteStack) Dial(ctx context.Context, _ netip.AddrPort, _ Options) (Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errUDPLiteWindows
}

func (udpLiteStack) Listen(ctx context.Context, _ Options) (Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errUDPLiteWindows
}

func setCoverage(int, int, int) error { return errUDPLiteWindows }

func readCoverage(*net.UDPConn, *TransportInfo) error { return errUDPLiteWindows }

func fdToUDPConn(int) (*net.UDPConn, error) { return nil, errUDPLiteWindows }

// connectFD: connecting a rendezvous socket in place (and handing the
// connected socket to a new *net.UDPConn, which needs a descriptor
// duplicate) is not supported on Windows: ConnectRendezvousSocket fails
// with errors.ErrUnsupported.
func connectFD(int, netip.AddrPort) error {
	return fmt.Errorf("connecting a rendezvous socket in place: %w on windows", errors.ErrUnsupported)
}
