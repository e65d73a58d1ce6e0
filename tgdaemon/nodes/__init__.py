"""Several daemons on one database (design 9): this daemon as a node of the fleet.

``node`` registers and heartbeats, ``ownership`` keeps the accounts this node owns in its ``gate``
(which the gateway asks before every call), ``leader`` runs the once-per-fleet work while this node
holds the leadership, and ``balancer`` decides where accounts should be. On SQLite the same code runs
with exactly one node, which owns every account and leads.
"""

from tgdaemon.nodes.node import Node, NodeNameTaken

__all__ = ["Node", "NodeNameTaken"]
