"""The report of the quick suite, as a reader sees it: headless Chromium at 1,400 px wide."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from repo import REPO
from timing import scaled

from aebench.cli import main
from aebench.results.table import read_results
from aebench.views.report import REPORT_HTML

QUICK = REPO / "benchmarks" / "quick.toml"
CHROMIUM = shutil.which("chromium")
WIDTH = 1400
EPOCHS = 2  # the page is what is tested, not how well the models learn

# Appended to a copy of the page: once everything is laid out, write what was measured into the
# DOM as JSON, where --dump-dom shows it.
MEASURE = """
<script>
window.addEventListener("load", () => {
  const limit = document.body.getBoundingClientRect().right + 0.5;
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el.parentElement.closest(".scroll")) continue;  // inside a scroll box it may be wide
    const right = el.getBoundingClientRect().right;
    if (right > limit) wide.push(`${el.tagName}.${el.className} right=${Math.round(right)}`);
  }
  const heading = [...document.querySelectorAll("h3")].find(h => h.textContent === "Headline");
  const box = heading.nextElementSibling;
  const rows = [...box.querySelector("table").rows].map(r => [...r.cells].map(c => c.innerText));
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    wide: wide,
    scrollBoxes: document.querySelectorAll(".scroll").length,
    headline: rows,
    rankedBy: box.nextElementSibling.textContent,
  });
  document.body.append(out);
});
</script>
"""


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick suite run once, shorter and without MLflow: its results folder."""
    folder = tmp_path_factory.mktemp("quick")
    text = QUICK.read_text(encoding="utf-8")
    epochs = tomllib.loads(text)["train"]["epochs"]
    text = text.replace(f"epochs = {epochs}\n", f"epochs = {EPOCHS}\n", 1)
    if "[observers.mlflow]" in text:  # MLflow off: the page is what is tested
        text = text.replace("[observers.mlflow]\n", "[observers.mlflow]\nenabled = false\n", 1)
    else:
        text += "\n[observers.mlflow]\nenabled = false\n"
    parsed = tomllib.loads(text)
    mlflow = parsed["observers"]["mlflow"]
    assert parsed["train"]["epochs"] == EPOCHS and mlflow["enabled"] is False
    suite = folder / "quick.toml"
    suite.write_text(text, encoding="utf-8")
    assert main(["run", str(suite), "--output", str(folder / "out")]) == 0
    return folder / "out"


def measure(page: Path, profile: Path) -> dict:
    """The page laid out at ``WIDTH`` px by headless Chromium, measured by ``MEASURE``."""
    copy = page.with_name("measured.html")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"))
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},1000",
            "--virtual-time-budget=10000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, f"nothing measured; chromium said:\n{done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _mean(cell: str) -> float:
    """The mean of a ``mean ± half-width`` cell (or ``mean (2 seeds: no interval)``, ``mean
    [low, high]``); NaN for "–"."""
    text = re.split(r" ± | \(| \[", cell.strip())[0]
    return math.nan if text == "–" else float(text)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get)")
def test_the_quick_report_fits_1400_px_and_its_headline_is_ranked(
    quick_report: Path, tmp_path: Path
) -> None:
    measured = measure(quick_report / REPORT_HTML, tmp_path / "profile")
    assert measured["innerWidth"] == WIDTH
    # Nothing sticks out of the main column: wide tables scroll inside their own boxes.
    assert measured["wide"] == []
    assert measured["scrollWidth"] <= measured["clientWidth"] == WIDTH
    assert measured["scrollBoxes"] >= 1 + 5  # the headline table and the built-in groups

    header, *rows = measured["headline"]
    ranked_by = re.match(r"Ranked by (\w+) \((higher|lower) is better\)", measured["rankedBy"])
    assert ranked_by, measured["rankedBy"]
    column, better = ranked_by.groups()
    j = next(j for j, h in enumerate(header) if h.replace("\u200b", "").startswith(column + " "))
    # In the page: every value before every "–", the values best first.
    shown = [_mean(row[j]) for row in rows]
    values = [v for v in shown if not math.isnan(v)]
    assert values and all(math.isnan(v) for v in shown[len(values) :])
    assert values == sorted(values, reverse=better == "higher")

    # And in the data: the configurations with a value, in the order of their means over seeds.
    table = read_results(quick_report)
    means = table.groupby(["model", "regularizer"])[column].mean().dropna()
    expected = means.sort_values(ascending=better == "lower").index.tolist()
    labels = [tuple(row[0].split("\n")[0].rstrip(" ⚠ⓘ").split(" / ")) for row in rows]
    assert labels[: len(expected)] == expected
    assert len(rows) == table.groupby(["model", "regularizer"]).ngroups
