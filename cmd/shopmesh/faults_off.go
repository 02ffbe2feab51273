//go:build !faults

package main

// faultsBuild: this binary's orders cannot be told to crash; build with -tags faults.
const faultsBuild = false
