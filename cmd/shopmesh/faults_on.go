//go:build faults

package main

// faultsBuild: this binary's orders can be told to crash (the faults build tag).
const faultsBuild = true
