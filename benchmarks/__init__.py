"""beamish benchmarks: beamish versus plain threads, side by side."""
