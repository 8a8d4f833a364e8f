"""Stripe's form encoding: `line_items[0][price]=p&metadata[plan]=pro&expand[0]=subscription`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_TOKEN = re.compile(r"\[([^\[\]]*)\]")


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _listify(value) for key, value in node.items()}
        if node and all(key.isdigit() or key == "" for key in node):
            return [node[key] for key in sorted(node, key=lambda k: int(k) if k.isdigit() else 0)]
    return node


def decode(query: str) -> dict[str, Any]:
    """Nested params from a query string or form body; `a[0]` keys become lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        head = key.split("[", 1)[0]
        path = [head, *_TOKEN.findall(key[len(head):])]
        node = root
        for depth, part in enumerate(path):
            if part == "":  # `expand[]=x`: append
                part = str(len(node))
            if depth == len(path) - 1:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return _listify(root)
