"""`nngraph view`: the self-contained HTML page, driven in a real headless Chromium (Debian's, via Playwright).

Every request that is not the page's own file is aborted and recorded: the page must work offline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nngraph.cost.report import cost_report, sizes_for
from nngraph.spec import load_spec
from nngraph.view import to_html, view_data

SPECS = Path(__file__).resolve().parents[2] / "specs"
CHROMIUM = "/usr/bin/chromium"  # installed by scripts/setup.sh (apt); never `playwright install`
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

UNUSED = """
nngraph: 1
name: unused
inputs:
  x: {shape: [batch, 8], dtype: float32}
graph:
  - {name: fc, op: linear, in: x, out: 4}
  - {name: spare, op: relu, in: x}
outputs: {y: fc}
"""


def _page_file(path: Path, out_dir: Path, graph_out: list | None = None) -> Path:
    """Write the view of the spec at ``path``; the loaded graph is appended to ``graph_out`` when given."""
    warnings: list = []
    graph = load_spec(path, on_warning=warnings.extend)
    html = out_dir / f"{path.stem}.html"
    html.write_text(to_html(view_data(graph, cost_report(graph, sizes_for(graph, {}, None)[0]), warnings)),
                    encoding="utf-8")
    if graph_out is not None:
        graph_out.append(graph)
    return html


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/setup.sh (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened:
    """A page with its console errors and the network requests it tried (all aborted)."""

    def __init__(self, browser, html: Path) -> None:
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(html.as_uri())

    def _route(self, route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def shown(self) -> list[str]:
        return self.page.evaluate("nngraphView.cy.nodes().map(n => n.id())")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return _page_file(SPECS / "gpt2_small.yaml", tmp_path_factory.mktemp("view"))


def test_every_zoo_spec_renders_offline_without_js_errors(browser, tmp_path):
    for path in sorted(SPECS.glob("*.yaml")):
        loaded: list = []
        opened = Opened(browser, _page_file(path, tmp_path, loaded))
        graph = loaded[0]
        shown = opened.shown()
        # everything drawn is a graph node, a block scope or an input/output; the top-level nodes are all there
        top = {n for n, node in graph.nodes.items() if not node.scope}
        assert top <= set(shown), path.stem
        assert len(shown) <= len(graph.nodes) + len(graph.inputs) + len(graph.outputs) + len(graph.block_uses) * 64
        assert opened.errors == [] and opened.blocked == [], (path.stem, opened.errors, opened.blocked)
        opened.page.close()


def test_gpt2_small_opens_as_12_collapsed_layers_and_a_block_expands(browser, gpt2):
    opened = Opened(browser, gpt2)
    shown = opened.shown()
    layers = sorted(s for s in shown if re.fullmatch(r"scope:h\.\d+", s))
    assert layers == sorted(f"scope:h.{i}" for i in range(12))
    assert not any(s.startswith("h.") for s in shown)  # no node inside a layer is drawn
    assert set(shown) == {*layers, "scope:h", "wte", "wpe", "drop", "ln_f", "lm_head", "tokens", "output:logits"}
    # a real double-click on layer 3 expands it: its own nodes appear, and its mlp block collapsed
    box = opened.page.evaluate("(() => { const n = nngraphView.cy.$id('scope:h.3'); const p = n.renderedPosition();"
                               " return [p.x, p.y]; })()")
    opened.page.mouse.dblclick(box[0], box[1])
    opened.page.wait_for_function("nngraphView.expanded.has('scope:h.3')")
    graph = load_spec(SPECS / "gpt2_small.yaml")
    direct = {n for n, node in graph.nodes.items() if node.scope == ("h", "3")}
    inner = set(opened.shown()) - set(shown)
    assert inner == direct | {"scope:h.3.mlp"} and len(direct) >= 6
    assert opened.errors == [] and opened.blocked == []


def test_search_finds_selects_and_describes_a_node(browser, gpt2):
    opened = Opened(browser, gpt2)
    opened.page.fill("#search", "h.7.mlp.c_fc")
    opened.page.press("#search", "Enter")
    assert opened.page.evaluate("nngraphView.cy.$(':selected').map(n => n.id())") == ["h.7.mlp.c_fc"]
    graph = load_spec(SPECS / "gpt2_small.yaml")
    row = next(r for r in cost_report(graph, sizes_for(graph, {}, None)[0])["nodes"] if r["name"] == "h.7.mlp.c_fc")
    info = opened.page.inner_text("#info")
    # the panel shows the node's op, shape, params, FLOPs and output bytes as `nngraph cost` gives them
    assert row["params"] == 768 * 3072 + 3072 and row["flops"] == 2 * 128 * 768 * 3072
    for key, text in [("op", "linear"), ("params", "2.36M"), ("flops", "603.98M"), ("shape", "[1, 128, 3072]")]:
        assert re.search(rf"^{key}\s+{re.escape(text)}$", info, re.M), (key, info)
    assert opened.errors == []


def test_a_validate_warning_is_shown_on_the_node_it_locates(browser, tmp_path):
    spec = tmp_path / "unused.yaml"
    spec.write_text(UNUSED, encoding="utf-8")
    opened = Opened(browser, _page_file(spec, tmp_path))
    assert opened.page.evaluate("nngraphView.cy.$id('spare').data('sev')") == "warning"
    assert opened.page.evaluate("nngraphView.cy.$id('fc').data('sev')") == ""
    opened.page.evaluate("nngraphView.find('spare')")
    assert "warning: node 'spare' is never used" in opened.page.inner_text("#info")
    assert f"{spec}:8:5" in opened.page.inner_text("#info")
