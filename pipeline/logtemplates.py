"""Drain3 template mining per service, and its templates as plain fields for a state record."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

from drain3 import TemplateMiner  # type: ignore[import-untyped]
from drain3.drain import LogCluster, LogClusterCache, Node  # type: ignore[import-untyped]
from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]

from pipeline.codec import unpack_int, unpack_str
from pipeline.config import LogMaskRule
from pipeline.logmask import DEFAULT_MASKS, CombinedMask, SiteMask

#: Distinct raw lines per service remembered with their template, so repeats skip Drain.
LINE_CACHE_SIZE: Final = 1024


def miner_config(
    similarity: float = 0.7,
    depth: int = 5,
    max_clusters: int | None = 1000,
    extra_masks: Iterable[LogMaskRule] = (),
) -> TemplateMinerConfig:
    """A Drain3 configuration built in code (no ini file): site masks first, then the defaults."""
    config = TemplateMinerConfig()
    config.drain_sim_th = similarity
    config.drain_depth = depth
    config.drain_max_clusters = max_clusters
    config.drain_max_children = 100
    config.parametrize_numeric_tokens = True
    config.profiling_enabled = False
    config.masking_instructions = [
        *(SiteMask(rule.pattern, rule.mask_with) for rule in extra_masks),
        CombinedMask(DEFAULT_MASKS),
    ]
    return config


class TemplateSet:
    """One service's template miner: raw line in, template id out; state snapshots as bytes."""

    def __init__(self, config: TemplateMinerConfig) -> None:
        self.config = config
        self.miner = TemplateMiner(config=config)
        self._lines: OrderedDict[str, int] = OrderedDict()

    def mine(self, message: str) -> tuple[int, bool]:
        """The template id of `message`, and whether this line created the template.

        A line seen before, raw or once masked, keeps the template it got then: the Drain
        tree search is the cost of mining, and most lines repeat once their variables are
        masked.
        """
        lines = self._lines
        drain = self.miner.drain
        cached = lines.get(message)
        if cached is not None and cached in drain.id_to_cluster:
            lines.move_to_end(message)
            return cached, False
        masked = self.miner.masker.mask(message)
        cached = lines.get(masked)
        if cached is not None and cached in drain.id_to_cluster:
            lines.move_to_end(masked)
            self._remember(message, cached)
            return cached, False
        cluster, change = drain.add_log_message(masked)
        cluster_id = int(cluster.cluster_id)
        self._remember(masked, cluster_id)
        self._remember(message, cluster_id)
        return cluster_id, change == "cluster_created"

    def _remember(self, line: str, cluster_id: int) -> None:
        self._lines[line] = cluster_id
        if len(self._lines) > LINE_CACHE_SIZE:
            self._lines.popitem(last=False)

    def template(self, template_id: int) -> str:
        """The current text of a template ('' when it was evicted)."""
        cluster = self.miner.drain.id_to_cluster.get(template_id)
        return "" if cluster is None else str(cluster.get_template())

    def __len__(self) -> int:
        return len(self.miner.drain.id_to_cluster)

    def snapshot(self) -> dict[str, Any]:
        """The mined templates as plain fields: Drain's clusters (least recently used first)
        and its prefix tree, for a state record (`pipeline.codec`)."""
        drain = self.miner.drain
        clusters = drain.id_to_cluster
        # cachetools keeps the LRU order apart from the items; restoring in it keeps eviction.
        order = getattr(clusters, "_LRUCache__order", clusters)
        return {
            "counter": drain.clusters_counter,
            "clusters": [
                [c.cluster_id, list(c.log_template_tokens), c.size]
                for c in (clusters.get(cid) for cid in list(order))
                if c is not None
            ],
            "tree": _node_fields(drain.root_node),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the mined templates with a `snapshot()`; raises ValueError or TypeError on
        a bad one. Builds Drain's own classes from checked fields, never from names in data."""
        drain = self.miner.drain
        clusters = {} if drain.max_clusters is None else LogClusterCache(drain.max_clusters)
        for cluster_id, tokens, size in state["clusters"]:
            cluster = LogCluster([unpack_str(t) for t in tokens], unpack_int(cluster_id))
            cluster.size = unpack_int(size)
            clusters[cluster.cluster_id] = cluster
        root = _node_from(state["tree"], drain.log_cluster_depth + 1)
        drain.clusters_counter = unpack_int(state["counter"])
        drain.id_to_cluster = clusters
        drain.root_node = root
        self._lines.clear()


def _node_fields(node: Node) -> dict[str, Any]:
    return {
        "ids": list(node.cluster_ids),
        "children": [[key, _node_fields(child)] for key, child in node.key_to_child_node.items()],
    }


def _node_from(data: dict[str, Any], depth_left: int) -> Node:
    """A prefix-tree node; the tree is no deeper than Drain's depth, so nesting is bounded."""
    if depth_left < 0:
        raise ValueError("template tree deeper than the miner's depth")
    node = Node()
    node.cluster_ids = [unpack_int(i) for i in data["ids"]]
    for key, child in data["children"]:
        node.key_to_child_node[unpack_str(key)] = _node_from(child, depth_left - 1)
    return node
