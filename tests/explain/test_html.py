"""The HTML explanation page: content, escaping of hostile text, no external assets,
the `explain` command, and a screenshot in a real headless browser when one is installed."""
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy
import pytest
import spacy
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.cli import app
from spacy_cls.explain.attention import cls_attention
from spacy_cls.explain.html import SHADE_RGB, predicted_labels, render_html


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quoted" \'single\''


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.attrs = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> TagCollector:
    collector = TagCollector()
    collector.feed(page)
    return collector


def shaded_doc(text, weights, cats, lang="en"):
    doc = spacy.blank(lang)(text)
    doc._.cls_attention = numpy.asarray(weights, dtype=numpy.float32)
    doc.cats = cats
    return doc


def test_tokens_shaded_by_weight_and_cats_sorted():
    doc = shaded_doc("great food , rude staff", [0.4, 0.1, 0.0, 0.2, 0.1], {"NEG": 0.25, "POS": 0.75})
    page = render_html([doc])
    spans = re.findall(r'<span class="tok" style="background: rgba\((\d+),(\d+),(\d+),([\d.]+)\)" title="([\d.]+)">([^<]*)</span>', page)
    assert [s[5] for s in spans] == ["great", "food", ",", "rude", "staff"]
    assert [float(s[3]) for s in spans] == [1.0, 0.25, 0.0, 0.5, 0.25]  # relative to the peak
    assert [float(s[4]) for s in spans] == [0.4, 0.1, 0.0, 0.2, 0.1]
    assert all(tuple(map(int, s[:3])) == SHADE_RGB for s in spans)
    # Cats: highest first, predicted one marked, 3 decimals, bar widths in percent.
    rows = re.findall(r'<tr( class="predicted")?><td class="label">([^<]*)</td>.*?width: ([\d.]+)%.*?<td class="score">([^<]*)</td>', page)
    assert rows == [(' class="predicted"', "POS", "75.0", "0.750"), ("", "NEG", "25.0", "0.250")]
    assert "Most attended: great (0.400), rude (0.200)" in page


def test_whitespace_kept_and_text_readable():
    text = "ok  then\nbye"
    doc = shaded_doc(text, numpy.ones(len(spacy.blank("en")(text))) / 10, {"A": 1.0})
    collected = parse(render_html([doc]))
    assert text in "".join(collected.text)


def test_hostile_text_and_labels_are_escaped():
    doc = shaded_doc(HOSTILE, numpy.linspace(0.1, 0.5, len(spacy.blank("en")(HOSTILE))), {'<b onmouseover="x">L</b>': 0.9, "M&M": 0.1})
    page = render_html([doc], title="<i>title</i>")
    collected = parse(page)
    assert "script" not in collected.tags and "img" not in collected.tags
    assert set(collected.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "p", "span", "section", "h2", "b", "div", "table", "tr", "td"}
    assert not any(name.startswith("on") for name, _ in collected.attrs)
    assert "i" not in collected.tags
    text = "".join(collected.text)
    assert HOSTILE in text  # shown as text, unchanged
    assert '<b onmouseover="x">L</b>' in text and "M&M" in text and "<i>title</i>" in text


def test_self_contained_page():
    doc = shaded_doc("fine", [0.3], {"POS": 0.6, "NEG": 0.4})
    page = render_html([doc])
    collected = parse(page)
    assert not {"script", "link", "img", "iframe", "object"} & set(collected.tags)
    assert not re.search(r"(src|href)\s*=|url\(|@import|https?://", page)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_chinese_and_unexplained_docs():
    zh = shaded_doc("服务很好", [0.1, 0.2, 0.05, 0.3], {"POS": 0.9, "NEG": 0.1}, lang="zh")
    plain = spacy.blank("en")("no attention here")
    page = render_html([zh, plain])
    assert '<section class="doc" lang="zh">' in page
    assert ">好</span>" in page and 'rgba(230,97,1,1.000)" title="0.3000">好' in page
    assert "no attention here" in page and "No cats" in page
    assert page.count('<section class="doc"') == 2


def test_predicted_labels_threshold():
    cats = {"FOOD": 0.8, "SERVICE": 0.55, "PRICE": 0.1}
    assert predicted_labels(cats) == ["FOOD"]
    assert predicted_labels(cats, 0.5) == ["FOOD", "SERVICE"]
    assert predicted_labels(cats, 0.9) == []
    assert predicted_labels({}) == []


def test_explain_command(en_pipeline, tmp_path):  # noqa: F811
    output = tmp_path / "out" / "page.html"
    result = CliRunner().invoke(app, ["explain", str(en_pipeline), "i love this movie", HOSTILE, "--output", str(output)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"Wrote {output} (2 docs)" in result.output
    page = output.read_text(encoding="utf8")
    assert page.count('<section class="doc"') == 2
    collected = parse(page)
    assert "script" not in collected.tags and "img" not in collected.tags
    assert HOSTILE in "".join(collected.text)
    nlp = spacy.load(en_pipeline)
    doc = cls_attention(nlp, [nlp("i love this movie")])[0]
    for token, weight in zip(doc, doc._.cls_attention):
        assert f'title="{weight:.4f}">{token.text}</span>' in page


def test_explain_command_multilabel_threshold(multilabel_pipeline, tmp_path):  # noqa: F811
    output = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["explain", str(multilabel_pipeline), "cheap price and good food", "-o", str(output)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = output.read_text(encoding="utf8")
    predicted = re.findall(r'<tr class="predicted"><td class="label">([^<]*)</td>', page)
    assert sorted(predicted) == ["FOOD", "PRICE"]


def find_browser():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(browser: str, page: Path, png: Path, size=(1000, 700)) -> None:
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}",
         f"--window-size={size[0]},{size[1]}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )


@pytest.mark.skipif(find_browser() is None, reason="no chromium installed")
def test_page_in_headless_browser(tmp_path):
    from PIL import Image

    en = shaded_doc("the staff were rude but the food was great", [0.05, 0.1, 0.05, 0.3, 0.02, 0.02, 0.1, 0.05, 0.4], {"POS": 0.7, "NEG": 0.3})
    zh = shaded_doc("这家酒店的服务非常好", [0.05, 0.02, 0.1, 0.1, 0.01, 0.2, 0.2, 0.05, 0.05, 0.4], {"POS": 0.9, "NEG": 0.1}, lang="zh")
    page = tmp_path / "page.html"
    page.write_text(render_html([en, zh]), encoding="utf8")
    png = tmp_path / "page.png"
    screenshot(find_browser(), page, png)
    assert png.stat().st_size > 10_000
    image = numpy.asarray(Image.open(png).convert("RGB")).astype(int)
    assert image.shape[:2] == (700, 1000)
    assert len(numpy.unique(image.reshape(-1, 3), axis=0)) > 50  # text, shading, bars: not one colour
    # The most-attended tokens are drawn in the full shading colour.
    full_shade = (numpy.abs(image - numpy.array(SHADE_RGB)).sum(axis=-1) < 12).sum()
    assert full_shade > 200
    # The predicted-label bars are drawn.
    green = (numpy.abs(image - numpy.array([0x1A, 0x98, 0x50])).sum(axis=-1) < 12).sum()
    assert green > 500
