"""`netspec check --html`: one self-contained page, rendered in a real (headless) browser."""
import html
import re
import shutil
import subprocess

import pytest

import netspec
from netspec.cli import main
from netspec.html_report import render_html

pytest.importorskip("pydot")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_fetches_nothing_and_holds_table_drawing_chart_issues():
    report = netspec.check("models/alexnet-paper/deploy.prototxt")
    page = render_html(report)
    assert not re.search(r'\b(src|href)\s*=\s*"(https?:)?//', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert page.count('<tr id="row-') == 24
    assert 'id="row-conv1"' in page and 'data-layer="conv1"' in page
    # the warning links to its layer and says its file line
    assert re.search(r'<li class="issue-warning">.*?deploy.prototxt:\d+</code> <a class="layer-link" '
                     r'href="#row-conv1"', page)
    note = report.layer("conv1").notes[0]
    assert "53.25" in note and html.escape(note) in page          # the arithmetic is on the page
    assert "Convolution</text>" in page                            # the chart by layer type
    if shutil.which("dot"):
        assert "<svg" in page and "96x54x54" in page


def test_check_writes_the_page_and_still_prints(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["check", "models/lenet/deploy.prototxt", "--html", str(out)]) == 0
    assert "total:" in capsys.readouterr().out
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed")
@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz's dot is not installed")
def test_page_runs_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(netspec.check("models/lenet/deploy.prototxt")))
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri() + "#sort=-params"],
        capture_output=True, text=True, timeout=120)
    dom = run.stdout
    assert 'data-ready="yes"' in dom, run.stderr[-2000:]          # the script ran to its end
    assert 'data-sorted="-params"' in dom
    rows = re.findall(r'<tr id="row-([^"]+)"', dom)
    assert rows[:3] == ["ip1", "conv2", "ip2"]                     # sorted by parameters, most first
    assert len(rows) == 9
    svg = dom[dom.index('<div id="drawing"'):]
    assert "<svg" in svg and 'class="node"' in svg and "transform: translate(" in svg   # drawn, fitted
