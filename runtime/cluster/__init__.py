"""Cluster mode's layer between ``node/`` and ``agent/``: which node owns which shard of
the name space, the membership lease that lets a node own anything at all, and the
transport between nodes and from remote clients.

    placement.py   pure: a name's shard (blake2b), a shard's rendezvous owner, and
                   ``plan``: what this node should claim, release or drop now
    lease.py       pure: when to renew the lease and when to fence oneself
    membership.py  the shell: a thread that joins, renews, plans, claims and releases
                   through ``store/postgres/cluster.py`` and tells its owner
                   (``on_gained``, ``on_lost``, ``on_fenced``)
    keys.py        CURVE keys on disk (generate, authorize, load)
    frontdoor.py   the node's TCP front door: a ROUTER as CURVE server, its ZAP
                   authenticator, the relay to the node's control socket
    address.py     ``tcp://`` addresses (pure)
    rounds.py      the round loop of the node's cluster workers (``run_rounds``)
"""
