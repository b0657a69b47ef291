"""Cluster mode's layer between ``node/`` and ``agent/``: which node owns which shard of
the name space, and the membership lease that lets a node own anything at all.

    placement.py   pure: a name's shard (blake2b), a shard's rendezvous owner, and
                   ``plan``: what this node should claim, release or drop now
    lease.py       pure: when to renew the lease and when to fence oneself
    membership.py  the shell: a thread that joins, renews, plans, claims and releases
                   through ``store/postgres/cluster.py`` and tells its owner
                   (``on_gained``, ``on_lost``, ``on_fenced``)
"""
