// go_busy.go - the Go test subject of the symbolizer's .gopclntab reader
// (tests/unit/test_gopclntab.c, tests/integration/gosym_test.sh): CPU
// work in its own main.* functions until it has used as many seconds of
// CPU time as its argument says (its own time, so a loaded machine only
// makes it last longer), allocating nothing in the loop so that the
// runtime (GC, scheduler) takes next to no samples. mix is small enough for the compiler to
// inline into hashLoop: its samples belong to main.mix, inlined, under
// main.hashLoop.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func mix(h, v uint64) uint64 {
	h ^= v
	h *= 1099511628211
	return h ^ h>>29
}

//go:noinline
func hashLoop(n int) uint64 {
	h := uint64(1469598103934665603)
	for i := 0; i < n; i++ {
		h = mix(h, uint64(i))
	}
	return h
}

//go:noinline
func sieve(flags []bool) int {
	for i := range flags {
		flags[i] = true
	}
	count := 0
	for i := 2; i < len(flags); i++ {
		if flags[i] {
			count++
			for j := i * i; j < len(flags); j += i {
				flags[j] = false
			}
		}
	}
	return count
}

// cpuSeconds is the CPU time the process has used, user and system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

//go:noinline
func work(secs float64, flags []bool) uint64 {
	var sum uint64
	for cpuSeconds() < secs {
		for i := 0; i < 16; i++ { // ~10 ms between getrusage calls
			sum += hashLoop(200000)
			sum += uint64(sieve(flags))
		}
	}
	return sum
}

func main() {
	secs := 3.0
	if len(os.Args) > 1 {
		if v, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			secs = v
		}
	}
	flags := make([]bool, 100000)
	fmt.Println(work(secs, flags))
}
