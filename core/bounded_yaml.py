"""YAML input with bounds, so a hostile or mistaken file is refused in milliseconds.

PyYAML composes an alias as a second reference to its anchor's node, so a few hundred bytes
("billion laughs": nine levels of nine aliases) describe 10^9 values that later copies, checks
and error messages expand; deep nesting overflows the composer's recursion. The loader below
refuses a document whose aliases expand past `MAX_EXPANDED_NODES` or that nests deeper than
`MAX_DEPTH`, before anything is built from it; real configs use few or no aliases.
PyYAML has no such limits of its own (its CLoader composes in C, out of reach, so this is the
pure-Python SafeLoader: config files are a few kB).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_YAML_CHARS = 1_000_000  # the shipped default.yaml is 17 kB
MAX_EXPANDED_NODES = 100_000  # default.yaml is about 600 nodes
MAX_DEPTH = 64  # default.yaml nests 4 levels


ALIAS_FIX = (
    "write the values out: a config needs few aliases (&anchor / *alias), not aliases of aliases"
)


class YamlBoundError(yaml.YAMLError):
    """A document past one of the bounds: `problem` says which and `fix` what to do, each in one
    short line."""

    def __init__(self, problem: str, fix: str, problem_mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.problem_mark = problem_mark


class BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that checks nesting while composing and alias expansion once composed."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlBoundError(
                    f"nested deeper than {MAX_DEPTH} levels",
                    "flatten the structure (config sections nest a few levels)",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            expanded_size(node)
        return node


def expanded_size(root: Node) -> int:
    """How many nodes the document holds once every alias is written out; raises YamlBoundError
    past MAX_EXPANDED_NODES or on an alias inside its own anchor (an endless document). Each
    shared node is measured once, so this is linear in the file, not in what it expands to."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def measure(node: Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in on_path:
            raise YamlBoundError(
                "an alias refers to its own anchor (an endless value)", ALIAS_FIX, node.start_mark
            )
        on_path.add(id(node))
        total = 1
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += measure(child)
            if total > MAX_EXPANDED_NODES:
                raise YamlBoundError(
                    f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values "
                    "(an alias bomb?)",
                    ALIAS_FIX,
                    node.start_mark,
                )
        on_path.discard(id(node))
        sizes[id(node)] = total
        return total

    return measure(root)


def load_bounded(text: str) -> Any:
    """yaml.safe_load with the bounds above; raises yaml.YAMLError (YamlBoundError past one)."""
    if len(text) > MAX_YAML_CHARS:
        raise YamlBoundError(
            f"{len(text):,} characters, more than the {MAX_YAML_CHARS:,} allowed",
            "split the file or drop what is not configuration",
        )
    try:
        return yaml.load(text, Loader=BoundedSafeLoader)  # a SafeLoader subclass
    except RecursionError:  # aliases of deep parts nest deeper still once expanded
        raise YamlBoundError("nested too deep once its aliases are expanded", ALIAS_FIX) from None
