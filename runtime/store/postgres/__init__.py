"""The cluster's store of record on PostgreSQL (psycopg 3): membership leases, shard
ownership with its fencing epochs, and (``durability="replicated"``) the agents' state,
mailboxes, timers and dead letters. This package is the only place that imports psycopg,
as ``store/lmdb.py`` is for lmdb; it is imported only when a node runs in a cluster.

Tables (every row carries its cluster's name, so one database may hold several clusters;
``schema.py`` creates them, idempotently, under an advisory lock):

    table              key                   holds
    beamish_meta       key                   schema version
    beamish_cluster    cluster               the cluster's fixed shard count
    beamish_members    (cluster, node)       address, incarnation, lease_expires (set
                                             from the database's clock: now() + ttl),
                                             joined, draining, agents
    beamish_shards     (cluster, shard)      owner (a node or NULL), epoch (bumped by
                                             every change of owner), moved

Fencing, the one rule every replicated commit obeys: the transaction first reads its
shard row ``FOR SHARE`` and goes on only if ``owner`` is this node and ``epoch`` is the
epoch this node was granted; otherwise it raises `StaleEpoch` and commits nothing. A
takeover updates the same row (``epoch = epoch + 1``), so it waits for commits in flight
and every commit after it sees the new epoch: a node that was paused or cut off can never
commit over its successor (Temporal's RangeID, in one row).
"""
