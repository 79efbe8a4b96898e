"""Plain-text and markdown tables for the CLI, grids and experiment reports."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["format_table"]


def _cell(v: Any) -> str:
    """Floats to 4 decimals, except values that would print as 0.0000 (``1e-05``) and large ones.

    >>> [_cell(x) for x in (0.31234, 1e-05, 0.0, 12345.6, 3)]
    ['0.3123', '1e-05', '0.0000', '12345.6', '3']
    """
    if isinstance(v, float):
        if v != 0.0 and abs(v) < 5e-5:
            return f"{v:.3g}"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                 markdown: bool = True) -> str:
    """Render dict rows as an aligned markdown table (floats to 4 decimals).

    >>> print(format_table([{"model": "mf", "Recall@20": 0.1}]))
    | model | Recall@20 |
    |-------|-----------|
    | mf    | 0.1000    |
    """
    if not rows:
        return ""
    columns = list(columns or [k for k in rows[0]])
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    def line(vals):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    if not markdown:
        out.pop(1)
    return "\n".join(out)
