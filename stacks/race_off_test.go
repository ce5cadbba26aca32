//go:build !race

package stacks

// raceDetector reports a -race build.
const raceDetector = false
