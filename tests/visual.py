"""The visual check's eyes: what a page looks like to someone reading it, measured in the
browser (tests/test_visual.py uses them on every page in every language).

- ``layout_problems``: the page scrolls sideways; a line of text sticks out of the window (unless
  it is inside something that scrolls by itself, such as a wide table on a phone); two lines of
  text, or a line and a chart's bar, cover each other.
- ``untranslated``: text shown in English on a page in another language, found by the English
  strings of the catalog that the language translates differently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from playwright.sync_api import Page

#: Collects every visible line of text (a Range's client rects per text node), and the chart bars.
_MEASURE = """() => {
  const view = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let e = el; e && e !== document.body; e = e.parentElement) {
      const x = getComputedStyle(e).overflowX;
      if (x === 'auto' || x === 'scroll' || x === 'hidden') return true;
    }
    return false;
  };
  const shown = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden') return false;
      if (e.classList && e.classList.contains('skip')) return false;
      if (e.tagName === 'SUMMARY') return true;  // a closed <details> shows its summary only
      if (e.tagName === 'DETAILS' && !e.open) return false;
      const unseen = ['TITLE', 'OPTION', 'SELECT', 'SCRIPT', 'STYLE', 'TEXTAREA'];
      if (unseen.includes(e.tagName)) return false;
    }
    return true;
  };
  const lines = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let n = 0;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const text = node.textContent.trim();
    if (!text || !shown(node.parentElement)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    n += 1;
    for (const r of range.getClientRects()) {
      if (r.width < 1 || r.height < 1) continue;
      lines.push({node: n, text: text.slice(0, 60), left: r.left, right: r.right, top: r.top,
                  bottom: r.bottom, free: !scrolls(node.parentElement)});
    }
  }
  const bars = [...document.querySelectorAll('svg.chart rect')].map((e) => {
    const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  }).filter((r) => r.right - r.left >= 1);
  return {view, wide: document.documentElement.scrollWidth, lines, bars};
}"""


def _overlap(a: dict[str, float], b: dict[str, float], slack: float) -> bool:
    width = min(a["right"], b["right"]) - max(a["left"], b["left"])
    height = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    return width > slack and height > slack


def layout_problems(page: Page) -> list[str]:
    """What is wrong with the page as laid out now; empty when nothing is."""
    measured: dict[str, Any] = page.evaluate(_MEASURE)
    view = measured["view"]
    problems = []
    if measured["wide"] > view + 1:
        problems.append(f"scrolls sideways: {measured['wide']} px wide in {view} px")
    lines = measured["lines"]
    for line in lines:
        if line["free"] and (line["right"] > view + 1 or line["left"] < -1):
            problems.append(f"text outside the window: {line['text']!r}")
    for index, line in enumerate(lines):
        for other in lines[index + 1 :]:
            if other["node"] != line["node"] and _overlap(line, other, 2):
                problems.append(f"text over text: {line['text']!r} and {other['text']!r}")
        for bar in measured["bars"]:
            if _overlap(line, bar, 2):
                problems.append(f"a chart bar covers {line['text']!r}")
    return sorted(set(problems))


def english_strings(catalog: Path) -> set[str]:
    """The English texts a page would show untranslated in the catalog's language: those it
    translates differently (or not at all), whole and without placeholders."""
    with catalog.open("rb") as handle:
        messages = read_po(handle)
    found = set()
    for message in messages:
        if not message.id or not isinstance(message.id, str) or "%(" in message.id:
            continue
        if message.string != message.id:
            found.add(message.id.strip())
    return found


def untranslated(page: Page, english: set[str]) -> list[str]:
    """Texts on the page that are one of ``english`` (elements' whole text, and text nodes)."""
    texts: list[str] = page.evaluate(
        """() => {
          const out = [];
          for (const e of document.body.querySelectorAll('*')) {
            if (['SCRIPT', 'STYLE', 'TITLE'].includes(e.tagName)) continue;
            for (const c of e.childNodes) if (c.nodeType === 3) out.push(c.textContent);
            if (e.children.length === 0) out.push(e.textContent);
          }
          for (const a of ['title', 'aria-label', 'placeholder', 'alt']) {
            for (const e of document.querySelectorAll(`[${a}]`)) out.push(e.getAttribute(a));
          }
          out.push(document.title.split(' · ')[0]);
          return out;
        }"""
    )
    seen = {re.sub(r"\s+", " ", text).strip() for text in texts}
    return sorted(text for text in seen if text in english)
