//go:build !linux && !darwin && !freebsd

package stacks

// getDF: no socket option here forbids source fragmentation; WriteNoFrag
// fails with ErrNoFragUnsupported and sends nothing.
func getDF(int, bool) (int, error) { return 0, ErrNoFragUnsupported }

// setDF: see getDF.
func setDF(int, bool, bool, int) error { return ErrNoFragUnsupported }

// pathMTU: not known here.
func pathMTU(int, bool) (int, error) { return 0, ErrNoFragUnsupported }

// keepStreamDF does nothing: TCP's DF bit follows the system's path MTU
// discovery setting.
func keepStreamDF(int, bool) error { return nil }
