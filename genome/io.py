"""Genome serialization: versioned node-link JSON and GraphML. Loading never unpickles.

The JSON form is the canonical one (what runs store and bundles ship)::

    {"format": "evograph-genome", "version": 1, "directed": true,
     "nodes": [{"id": 0, "op": "input", "params": {"shape": [1, 8, 8]}}, ...],
     "links": [{"source": 0, "target": 1}, ...],
     "genes": {"learning_rate": 0.1, ...}}

GraphML cannot hold lists or None, and reads node ids back as strings, so each node's params
and the genes are stored as JSON strings and ids are converted back to integers on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import GenomeFormatError
from .core import Genome, Node

FORMAT = "evograph-genome"
VERSION = 1
PICKLE_PROTOCOL_MARK = 0x80


def to_dict(genome: Genome) -> dict[str, Any]:
    content = genome.canonical_dict()
    return {"format": FORMAT, "version": VERSION, "directed": True,
            "nodes": content["nodes"],
            "links": [{"source": a, "target": b} for a, b in content["edges"]],
            "genes": content["genes"]}


def to_json(genome: Genome, indent: int | None = 2) -> str:
    return json.dumps(to_dict(genome), indent=indent, sort_keys=True)


def from_dict(data: Any, where: str = "genome") -> Genome:
    """Build a genome from its JSON dict, checking the format, version and field types."""
    if not isinstance(data, dict):
        raise GenomeFormatError("expected a JSON object", where)
    if data.get("format") != FORMAT:
        raise GenomeFormatError(f"not an evograph genome (format={data.get('format')!r})", where)
    if data.get("version") != VERSION:
        raise GenomeFormatError(f"unsupported schema version {data.get('version')!r} "
                                f"(this evograph reads version {VERSION})", where)
    try:
        nodes = [_node_from_dict(n) for n in data["nodes"]]
        edges = [(_int(link["source"]), _int(link["target"])) for link in data["links"]]
        genes = data.get("genes", {})
        if not isinstance(genes, dict):
            raise TypeError("genes must be an object")
        return Genome.make(nodes, edges, genes)
    except (KeyError, TypeError, ValueError) as exc:
        raise GenomeFormatError(f"malformed genome: {_describe(exc)}", where) from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"node id {value!r} must be an integer")
    return int(value)


def _node_from_dict(item: Any) -> Node:
    if not isinstance(item, dict):
        raise TypeError(f"node entry {item!r} must be an object")
    params = item.get("params", {})
    if not isinstance(params, dict):
        raise TypeError(f"params of node {item.get('id')!r} must be an object")
    return Node.make(_int(item["id"]), str(item["op"]), **params)


def _describe(exc: Exception) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)


def from_json(text: str, where: str = "genome") -> Genome:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenomeFormatError(f"not valid JSON ({exc.msg} at line {exc.lineno})", where) from None
    return from_dict(data, where)


def save(genome: Genome, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() == ".graphml":
        nx.write_graphml(to_graphml_graph(genome), path)
    else:
        path.write_text(to_json(genome) + "\n")


def load(path: str | Path) -> Genome:
    """Load a genome from ``.json`` or ``.graphml``; refuse pickles and binary files clearly."""
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GenomeFormatError(f"cannot read file ({exc.strerror})", where) from None
    if raw[:1] == bytes([PICKLE_PROTOCOL_MARK]):
        raise GenomeFormatError("is a pickle file; evograph never unpickles (use genome JSON)",
                                where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GenomeFormatError("is a binary file, not genome JSON or GraphML", where) from None
    if text.lstrip().startswith("<"):
        return from_graphml_text(text, where)
    return from_json(text, where)


def to_graphml_graph(genome: Genome) -> nx.DiGraph:
    """A GraphML-safe graph: string/number attributes only, params and genes as JSON text."""
    content = genome.canonical_dict()
    g = nx.DiGraph(format=FORMAT, version=VERSION,
                   genes=json.dumps(content["genes"], sort_keys=True))
    for node in content["nodes"]:
        g.add_node(node["id"], op=node["op"], params=json.dumps(node["params"], sort_keys=True))
    g.add_edges_from(genome.edges)
    return g


def from_graphml_text(text: str, where: str = "genome") -> Genome:
    try:
        g = nx.parse_graphml(text, node_type=int)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a format error here
        raise GenomeFormatError(f"not valid GraphML ({exc})", where) from None
    if g.graph.get("format") != FORMAT:
        raise GenomeFormatError("GraphML is not an evograph genome", where)
    if int(g.graph.get("version", -1)) != VERSION:
        raise GenomeFormatError(f"unsupported schema version {g.graph.get('version')!r}", where)
    try:
        nodes = [{"id": n, "op": attrs["op"], "params": json.loads(attrs.get("params", "{}"))}
                 for n, attrs in g.nodes(data=True)]
        data = {"format": FORMAT, "version": VERSION, "nodes": nodes,
                "links": [{"source": a, "target": b} for a, b in g.edges()],
                "genes": json.loads(g.graph.get("genes", "{}"))}
    except (KeyError, json.JSONDecodeError) as exc:
        raise GenomeFormatError(f"malformed GraphML genome: {_describe(exc)}", where) from None
    return from_dict(data, where)
