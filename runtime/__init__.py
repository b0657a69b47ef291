"""beamish.runtime."""
