//go:build !linux

package stacks

import (
	"errors"
	"net"
)

// Outside Linux a path reading has the addresses alone: there is no route
// lookup, path MTU or MPTCP_INFO here, and no route monitor.

func readKernelPath(*PathReading, Transport) {}

func tcpPathMTU(*net.TCPConn) (int, error) { return 0, errors.ErrUnsupported }

func udpPathMTU(*net.UDPConn, *net.UDPAddr) (int, error) { return 0, errors.ErrUnsupported }

func mptcpSubflows(*net.TCPConn) (int, error) { return 0, errors.ErrUnsupported }

// RouteMonitor watches the kernel's links, addresses and routes (Linux
// only).
type RouteMonitor struct{}

// NewRouteMonitor fails with errors.ErrUnsupported outside Linux.
func NewRouteMonitor() (*RouteMonitor, error) { return nil, errors.ErrUnsupported }

// Next fails with errors.ErrUnsupported.
func (*RouteMonitor) Next() (int, error) { return 0, errors.ErrUnsupported }

// Close does nothing.
func (*RouteMonitor) Close() error { return nil }

// BoundDevice is "" outside Linux: no reading sees a bound interface.
func BoundDevice(Transport) string { return "" }
