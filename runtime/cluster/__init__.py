"""Between nodes and from remote clients: CURVE keys (keys.py), the node's TCP front door
(frontdoor.py: a ROUTER as CURVE server, its ZAP authenticator, the relay to the node's
control socket) and the client's side of it (remote.py)."""
