"""The one HTML report frame every task fills with its own sections.

A report is a single self-contained page: inline CSS, inline SVG and PNG (``data:``
URIs), no script, nothing fetched from elsewhere. The frame writes the head, the
title and the one-line summary under it; a task passes its sections as HTML
fragments built with :func:`esc` (text from the data is always escaped),
:func:`ci_text`, :func:`html_table`, :func:`png_base64` and
:func:`model_card_section`. The page is written atomically (a temporary file in the
same folder, then ``os.replace``), so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import logging
import os
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

THUMBNAIL = 192  # longest side of an embedded PNG, in pixels

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#222;line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;
margin-top:32px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{
text-align:left}.muted{color:#666;font-size:.9em}.charts{display:flex;flex-wrap:wrap;gap:12px}
.charts svg{font-size:11px;font-family:inherit}.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:200px}figure img{max-width:192px;image-rendering:auto;border:1px solid #999}
figcaption{font-size:.8em;word-break:break-all}.card{background:#fafafa;border:1px solid #ddd;
padding:4px 16px}.warn{color:#a40}
"""

_ACTIVE_TAGS = {"script", "link", "iframe", "frame", "object", "embed", "base", "applet"}
_URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}
_CSS_FETCH = re.compile(r"@import|url\(\s*['\"]?\s*(?!data:|#)", re.I)


class _Audit(HTMLParser):
    """Collects what would make a page run code or fetch something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _ACTIVE_TAGS:
            self.problems.append(f"<{tag}> element")
        if tag == "meta" and any(k == "http-equiv" for k, _ in attrs):
            self.problems.append("<meta http-equiv> element")
        self._in_style = tag == "style"
        for name, value in attrs:
            v = (value or "").strip().lower()
            if name.startswith("on"):
                self.problems.append(f"event handler {name} on <{tag}>")
            elif name in _URL_ATTRS and v and not v.startswith(("data:", "#")):
                self.problems.append(f"reference {name}={v[:60]!r} on <{tag}>")
            elif name == "style" and _CSS_FETCH.search(v):
                self.problems.append(f"style fetch on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and _CSS_FETCH.search(data):
            self.problems.append("stylesheet fetch (@import or url())")


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML (element content and quoted attributes)."""
    return html.escape(str(value))


def ci_text(m: Any, digits: int = 3) -> str:
    """``value (lo–hi)`` of a ``{"value", "ci95"}`` metric; ``n/a`` when undefined."""
    if not isinstance(m, dict) or m.get("value") is None:
        return "n/a"
    lo, hi = m.get("ci95") or (None, None)
    ci = f" ({lo:.{digits}f}&ndash;{hi:.{digits}f})" if lo is not None and hi is not None else ""
    return f"{m['value']:.{digits}f}{ci}"


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table of HTML cells (escape data-derived cells with :func:`esc` first)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_base64(rgb: np.ndarray, max_side: int = THUMBNAIL) -> str:
    """Base64 PNG of an RGB uint8 image, its longest side brought to about ``max_side``
    (small images such as MedMNIST are enlarged by whole factors, nearest neighbour)."""
    from PIL import Image

    img = Image.fromarray(rgb, mode="RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
            Image.Resampling.BILINEAR,
        )
    elif scale > 2:  # MedMNIST-sized images: enlarge so that the reader can see them
        f = int(scale)
        img = img.resize((img.width * f, img.height * f), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def model_card_section(card_md: str | None) -> str:
    """The run's model card (markdown) as a report section; its text is escaped and any
    link or image the markdown would make is dropped (the page fetches nothing)."""
    if not card_md:
        return ""
    import markdown

    body = markdown.markdown(html.escape(card_md, quote=False), extensions=["tables"])
    body = re.sub(r"<img\b[^>]*>", "", body)
    body = re.sub(r"<a\b[^>]*>(.*?)</a>", r"\1", body, flags=re.S)
    body = re.sub(r"<(/?)h[12]>", r"<\1h3>", body)
    return f"<h2>Model card</h2><div class='card'>{body}</div>"


def self_contained_problems(page: str) -> list[str]:
    """Why ``page`` is not self-contained (a script, an event handler, a reference to
    another file or site); empty when it is. Inline ``data:`` URIs and ``#`` anchors are
    fine; text content (escaped data) is never looked at."""
    audit = _Audit()
    audit.feed(page)
    audit.close()
    return audit.problems


def render_page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """The whole page: ``title`` and ``subtitle`` are plain text (escaped here);
    ``sections`` are HTML fragments, in order (empty ones left out).

    Raises ValueError when a section would make the page run a script or fetch anything.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='muted'>{esc(subtitle)}</p>" if subtitle else "",
        *sections,
        "</body></html>",
    ]
    page = "\n".join(p for p in parts if p)
    problems = self_contained_problems(page)
    if problems:
        raise ValueError(f"report {title!r} is not self-contained: {'; '.join(problems[:5])}")
    return page


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it and
    ``os.replace``: readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_page(path: Path, title: str, subtitle: str, sections: Sequence[str]) -> Path:
    """Render the page (:func:`render_page`) and write it atomically to ``path``."""
    out = write_text_atomic(Path(path), render_page(title, subtitle, sections))
    log.debug("wrote %s", out)
    return out
