"""beamish.supervisor."""
