"""Reading order of recognised lines: recursive XY-cut (Nagy and Seth, 1984) over the lines' boxes.

The stored text joins the lines in order and a phrase query matches words only where they are adjacent,
so a phrase broken over two lines is found only when those lines follow each other. faster-paddle returns
its lines in detection order, not reading order (a sign's last line can come before the line above it), so
its engine puts them in reading order here.

XY-cut, columns first: where a vertical band free of boxes splits the lines (a gutter), read the left part
before the right one (the right one first when the lines are set vertically, as CJK columns are); else where
a horizontal band free of boxes splits them, the part above before the part below; then the same within each
part, at the widest band each time. A part with no free band either way is read by rows (top to bottom, left
to right within a row). Blocks of text set side by side (a book cover's title next to its list of authors,
two signs in one photo) so come out whole, each block's lines together, even where a line gap of one block
happens to fall level with a line gap of the other; a line spanning the blocks (a heading) is read before
them, as a horizontal cut then separates it first. The price: a grid of single-word boxes in aligned columns
reads column by column; faster-paddle returns a line's words as one box, so a grid is rare in its output.
"""

from __future__ import annotations

from collections.abc import Sequence

from immich_search.ocr_engine import OcrLine

ROW_OVERLAP = 0.5
"""Two lines are in one row when their heights overlap by at least this share of the lower one (the rule
of PaddleOCR's ``sorted_boxes``, which compares box tops within 10 px, made independent of scale)."""

VERTICAL_RATIO = 1.5
"""A line whose box is this many times taller than wide, with more than one character, is set vertically
(a CJK column); a part made mostly of them is read right to left."""

Extent = tuple[float, float, float, float]


def _extent(line: OcrLine) -> Extent:
    xs, ys = line.box[0::2], line.box[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def reading_order(lines: Sequence[OcrLine], width: int = 1, height: int = 1) -> list[OcrLine]:
    """Return ``lines`` in reading order (see the module docstring).

    Args:
        lines: recognised lines, boxes normalised to 0-1 (:class:`~immich_search.ocr_engine.OcrLine`).
        width, height: the image's size in pixels (only their ratio matters: it tells tall boxes from wide
            ones).

    Returns:
        The same lines, reordered; the order is deterministic for equal input.
    """
    items = [(_extent(line), line) for line in lines]
    return [line for _, line in _cut(items, width / height if height else 1.0)]


def _widest_gap(items: list[tuple[Extent, OcrLine]], axis: int) -> tuple[float, int, list]:
    """Return the widest band along ``axis`` (0: x, 1: y) that no box crosses: ``(width, index, ordered)``,
    the items before ``index`` in ``ordered`` (by start) lying wholly before the band; width 0: no band."""
    ordered = sorted(items, key=lambda item: (item[0][axis], item[0][axis + 2]))
    widest, index = 0.0, 0
    end = ordered[0][0][axis + 2]
    for position, item in enumerate(ordered[1:], start=1):
        if item[0][axis] - end > widest:
            widest, index = item[0][axis] - end, position
        end = max(end, item[0][axis + 2])
    return widest, index, ordered


def _vertical(items: list[tuple[Extent, OcrLine]], aspect: float) -> bool:
    tall = sum(
        1 for (x1, y1, x2, y2), line in items if len(line.text) > 1 and (y2 - y1) > VERTICAL_RATIO * (x2 - x1) * aspect
    )
    return tall * 2 > len(items)


def _cut(items: list[tuple[Extent, OcrLine]], aspect: float) -> list[tuple[Extent, OcrLine]]:
    """XY-cut, columns first: split at the widest vertical free band, else at the widest horizontal one,
    else read by rows; then the same within each part."""
    if len(items) <= 1:
        return items
    gap, index, ordered = _widest_gap(items, 0)
    if gap > 0:
        parts = [ordered[:index], ordered[index:]]
        if _vertical(items, aspect):
            parts.reverse()
    else:
        gap, index, ordered = _widest_gap(items, 1)
        if gap <= 0:
            return _rows(items)
        parts = [ordered[:index], ordered[index:]]
    return [item for part in parts for item in _cut(part, aspect)]


def _rows(items: list[tuple[Extent, OcrLine]]) -> list[tuple[Extent, OcrLine]]:
    """Group lines into rows (heights overlapping by :data:`ROW_OVERLAP`), top to bottom, each left to right."""
    rows: list[list[tuple[Extent, OcrLine]]] = []
    for item in sorted(items, key=lambda item: (item[0][1] + item[0][3], item[0][0])):
        _, top, _, bottom = item[0]
        if rows:
            row_top = min(other[0][1] for other in rows[-1])
            row_bottom = max(other[0][3] for other in rows[-1])
            overlap = min(bottom, row_bottom) - max(top, row_top)
            if overlap >= ROW_OVERLAP * min(bottom - top, row_bottom - row_top):
                rows[-1].append(item)
                continue
        rows.append([item])
    return [item for row in rows for item in sorted(row, key=lambda item: item[0][0])]
