"""Snapshots in the original Contrail `db_json_exim.py` format, read and written as streams.

`format`: the document's shape, the ZooKeeper ignore list, `SnapshotError` (names the position);
`reader`: a streaming parser yielding rows and znodes; `writer`: a streaming writer;
`exim`: export from / import into running Cassandra and ZooKeeper clusters.
"""
