"""Graphviz ``dot`` rendering of a Graph (``tensoropt show --format dot``).

Op nodes are boxes labelled with the op and output types; graph inputs are
ellipses, constants are grey notes; edges carry the tensor name. The output is
deterministic (graph order), so it diffs cleanly.
"""

from __future__ import annotations

from .graph import Graph


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: Graph) -> str:
    lines = [f"digraph {_q(g.name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    src: dict[str, str] = {}
    for v in g.inputs:
        vid = f"in_{len(src)}"
        src[v.name] = vid
        lines.append(f"  {vid} [shape=ellipse, label={_q(f'%{v.name}: {v.type}')}];")
    for v in g.constants:
        vid = f"const_{len(src)}"
        src[v.name] = vid
        lines.append(f"  {vid} [shape=note, style=filled, fillcolor=lightgrey, label={_q(f'%{v.name}: {v.type}')}];")
    for i, n in enumerate(g.nodes):
        nid = f"n{i}"
        outs = "\\n".join(f"%{o.name}: {o.type}" for o in n.outputs)
        label = f"{n.op}\\n{outs}".replace('"', "'")
        lines.append(f'  {nid} [shape=box, style=rounded, label="{label}"];')
        for inp in n.inputs:
            if inp in src:
                lines.append(f"  {src[inp]} -> {nid} [label={_q(inp)}];")
        for o in n.outputs:
            src[o.name] = nid
    for k, out in enumerate(g.outputs):
        oid = f"out_{k}"
        lines.append(f"  {oid} [shape=ellipse, peripheries=2, label={_q(f'return %{out}')}];")
        if out in src:
            lines.append(f"  {src[out]} -> {oid};")
    lines.append("}")
    return "\n".join(lines) + "\n"
