//go:build !linux

package stacks

import "net"

// singularMax: IP_MTU is Linux's; elsewhere the size is unknown (0).
func singularMax(int, sockKind, bool) (int, error) { return 0, nil }

func probeSingularMax(*net.UDPAddr) (int, error) { return 0, nil }

func udpSingularMax(*net.UDPConn) int { return 0 }
