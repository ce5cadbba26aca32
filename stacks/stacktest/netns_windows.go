package stacktest

import (
	"errors"
	"fmt"
)

// JoinNetns fails with errors.ErrUnsupported on Windows: network
// namespaces are Linux only.
func JoinNetns(ns string) error {
	return fmt.Errorf("join network namespace %s: %w on windows", ns, errors.ErrUnsupported)
}
