//go:build unix && !linux

package stacktest

import "errors"

// setns: network namespaces are Linux only (NewNetns skips the test
// before any Netns exists; JoinNetns fails).
func setns(int) error { return errors.ErrUnsupported }
