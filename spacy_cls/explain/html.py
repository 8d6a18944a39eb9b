"""A self-contained HTML page (inline CSS, no scripts, no external files) that shows,
for each doc, its predicted cats as bars and its tokens shaded by `doc._.cls_attention`.

All text from the docs and the labels is escaped, so a text holding markup is shown
as text and cannot change the page.
"""
from html import escape
from typing import Iterable, List, Optional

import numpy
from spacy.tokens import Doc

from ..pipeline.extensions import CLS_ATTENTION

# Token shading: this colour at an opacity proportional to the token's weight.
SHADE_RGB = (230, 97, 1)
BAR_COLOUR = "#3b6fb6"
PREDICTED_BAR_COLOUR = "#1a9850"

CSS = f"""
body {{ font-family: "Noto Sans", "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
  "Microsoft YaHei", "Helvetica Neue", Arial, sans-serif; margin: 24px; color: #1f1f1f;
  background: #ffffff; max-width: 60em; }}
h1 {{ font-size: 1.4em; margin: 0 0 4px 0; }}
.note {{ color: #555; font-size: 0.9em; margin: 0 0 16px 0; }}
.doc {{ border: 1px solid #d0d0d0; border-radius: 6px; padding: 12px 16px; margin: 0 0 16px 0; }}
.doc h2 {{ font-size: 1em; margin: 0 0 8px 0; font-weight: normal; color: #444; }}
.doc h2 b {{ color: #1f1f1f; }}
.text {{ font-size: 1.25em; line-height: 2.1; white-space: pre-wrap; word-wrap: break-word; }}
.tok {{ border-radius: 3px; padding: 2px 0; }}
.top {{ color: #555; font-size: 0.9em; margin: 6px 0 10px 0; }}
table.cats {{ border-collapse: collapse; font-size: 0.95em; }}
table.cats td {{ padding: 2px 8px 2px 0; vertical-align: middle; }}
td.label {{ text-align: right; white-space: nowrap; }}
td.bar {{ width: 22em; }}
.track {{ background: #eeeeee; height: 0.9em; width: 100%; border-radius: 2px; }}
.fill {{ background: {BAR_COLOUR}; height: 100%; border-radius: 2px; }}
tr.predicted .fill {{ background: {PREDICTED_BAR_COLOUR}; }}
tr.predicted td.label {{ font-weight: bold; }}
td.score {{ font-variant-numeric: tabular-nums; }}
.legend {{ display: inline-block; width: 10em; height: 0.8em; vertical-align: middle;
  background: linear-gradient(to right, rgba({SHADE_RGB[0]},{SHADE_RGB[1]},{SHADE_RGB[2]},0),
  rgba({SHADE_RGB[0]},{SHADE_RGB[1]},{SHADE_RGB[2]},1)); border: 1px solid #ccc; }}
"""


def render_html(
    docs: Iterable[Doc],
    *,
    threshold: Optional[float] = None,
    title: str = "Why did it decide that?",
    n_top: int = 5,
) -> str:
    """One HTML page for the docs. Predicted labels are the highest-scoring one, or,
    with `threshold` (multi-label), every label scoring at least the threshold.
    Docs without `doc._.cls_attention` are shown unshaded."""
    sections = [_render_doc(i, doc, threshold, n_top) for i, doc in enumerate(docs, start=1)]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{escape(title)}</h1>",
            '<p class="note">Each token is shaded by the last layer\'s attention from [CLS] to its '
            "word pieces (mean over heads), relative to the doc's most-attended token "
            '<span class="legend"></span>. Hover over a token for its weight. '
            "Bars: the predicted scores (doc.cats).</p>",
            *sections,
            "</body>",
            "</html>",
            "",
        ]
    )


def _render_doc(number: int, doc: Doc, threshold: Optional[float], n_top: int) -> str:
    weights = doc._.get(CLS_ATTENTION) if doc.has_extension(CLS_ATTENTION) else None
    predicted = predicted_labels(doc.cats, threshold)
    heading = ", ".join(f"{escape(label)} {doc.cats[label]:.3f}" for label in predicted) or "no labels"
    parts = [
        f'<section class="doc" lang="{escape(doc.lang_)}">',
        f"<h2>Doc {number} &middot; predicted: <b>{heading}</b></h2>",
        f'<div class="text">{_render_tokens(doc, weights)}</div>',
    ]
    if weights is not None and len(doc):
        parts.append(f'<div class="top">Most attended: {_render_top(doc, weights, n_top)}</div>')
    parts.append(_render_cats(doc.cats, set(predicted)))
    parts.append("</section>")
    return "\n".join(parts)


def predicted_labels(cats: dict, threshold: Optional[float] = None) -> List[str]:
    if not cats:
        return []
    if threshold is not None:
        return [label for label, score in sorted(cats.items(), key=lambda kv: -kv[1]) if score >= threshold]
    return [max(cats, key=cats.get)]


def _render_tokens(doc: Doc, weights: Optional[numpy.ndarray]) -> str:
    if weights is None:
        return escape(doc.text)
    peak = float(weights.max()) if len(weights) else 0.0
    spans = []
    for token, weight in zip(doc, weights):
        alpha = float(weight) / peak if peak > 0 else 0.0
        r, g, b = SHADE_RGB
        spans.append(
            f'<span class="tok" style="background: rgba({r},{g},{b},{alpha:.3f})" '
            f'title="{float(weight):.4f}">{escape(token.text)}</span>{escape(token.whitespace_)}'
        )
    return "".join(spans)


def _render_top(doc: Doc, weights: numpy.ndarray, n: int) -> str:
    order = numpy.argsort(-weights, kind="stable")[:n]
    return ", ".join(f"{escape(doc[int(i)].text)} ({float(weights[i]):.3f})" for i in order)


def _render_cats(cats: dict, predicted: set) -> str:
    if not cats:
        return '<p class="note">No cats: the pipeline has no text classifier, or it did not run.</p>'
    rows = []
    for label, score in sorted(cats.items(), key=lambda kv: -kv[1]):
        width = min(max(float(score), 0.0), 1.0) * 100
        css_class = ' class="predicted"' if label in predicted else ""
        rows.append(
            f"<tr{css_class}><td class=\"label\">{escape(label)}</td>"
            f'<td class="bar"><div class="track"><div class="fill" style="width: {width:.1f}%"></div></div></td>'
            f'<td class="score">{float(score):.3f}</td></tr>'
        )
    return '<table class="cats">\n' + "\n".join(rows) + "\n</table>"
