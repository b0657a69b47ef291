"""beamish.mailbox."""
