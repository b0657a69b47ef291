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

    the store interface of replicated agents (`.agents.PgStore`; each record's packed
    ``to_wire`` form, `..records`, in a bytea, with the columns its queries need):
    beamish_counters   (cluster, name)       value (cluster-global: agent ids, order)
    beamish_agents     (cluster, name)       id, status, supervisor, record
    beamish_supervisors (cluster, name)      record
    beamish_mailbox    (cluster, agent_id, seq)  message   (append/peek/remove: the key)
    beamish_tails      (cluster, agent_id)   next_seq
    beamish_state      (cluster, agent_id)   version, state, processed
    beamish_attempts   (cluster, agent_id, seq)  n
    beamish_replies    (cluster, msg_id)     expires (indexed), reply
    beamish_dead       (cluster, agent_id, seq)  entry
    beamish_failures   (cluster, agent_id)   report
    beamish_timers     (cluster, agent_id, seq)  due_ns (indexed with the key: the
                                             earliest due first), timer
    beamish_wakes      (cluster, agent_id)   name
    beamish_events     (cluster, seq)        event
    beamish_writers    (cluster, writer)     commit (the number of the open store's
                                             latest write: how a commit cut off in
                                             flight is known to be durable or not),
                                             updated
    beamish_routes     (cluster, name)       node (node-pinned agents: whose LMDB holds
                                             the name; `.routes`)
    beamish_node_keys  (cluster, node)       public_key (what the others forward with)
    beamish_link_signals  id                 cluster, to_node (indexed), op, ref, ...:
                                             monitors and links across nodes (`.links`)
    beamish_link_watches  ref                cluster, target (indexed), node, incarnation,
                                             name: monitors of replicated agents (node
                                             '': held by replicated agent ``name``)
    beamish_cluster_events (cluster, seq)    name (indexed), event: the replicated
                                             agents' events from every node (`.events`)

Fencing, the one rule every replicated commit obeys: the transaction first reads its
shard row ``FOR SHARE`` and goes on only if ``owner`` is this node and ``epoch`` is the
epoch this node was granted; otherwise it raises `StaleEpoch` and commits nothing. A
takeover updates the same row (``epoch = epoch + 1``), so it waits for commits in flight
and every commit after it sees the new epoch: a node that was paused or cut off can never
commit over its successor (Temporal's RangeID, in one row). `.fencing` holds the
`Fence` record and that decision; `.agents.PgStore` applies it (``write`` on a store
opened with a fence, ``write_fenced``, ``write_group``).

Errors out of this package are beamish's, never psycopg's: `StaleEpoch`,
`StoreUnavailable` (nothing was committed; the store reconnects at its next use) and
`CommitOutcomeUnknown` (the connection was lost during the commit: neither acknowledge it
nor assume it failed; `PgStore.commit_outcome` says which, once the server is back).
"""
