"""`nngraph view`: the self-contained HTML page, driven in a real headless Chromium (Debian's, via Playwright).

Every request that is not the page's own file is aborted and recorded: the page must work offline. One browser
serves the module. Oracles: GPT-2 small's published shape for a decoder layer (12·d² + 13·d parameters, 2·T·12·d²
+ 4·d·T(T+1)/2 forward FLOPs at T tokens, its ten nodes' outputs), the cost module's rows, and validate's own
diagnostics for where an error is.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nngraph.cli import app
from nngraph.cost.report import cost_report, scope_sums, sizes_for
from nngraph.spec import check_spec, load_spec
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

# every drawn node's box (labels included), its enclosing blocks, and every drawn edge
GEOMETRY = """(() => { const cy = nngraphView.cy;
  const box = n => { const b = n.boundingBox(); return [b.x1, b.y1, b.x2, b.y2]; };
  return {nodes: cy.nodes().map(n => ({id: n.id(), box: box(n), within: n.ancestors().map(a => a.id()),
                                       at: [n.position().x, n.position().y]})),
          edges: cy.edges().map(e => [e.source().id(), e.target().id()])}; })()"""


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


def _chromium() -> str:
    """Debian's chromium; a skip only where scripts/setup.sh recorded why it could not install it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    note = Path(sys.prefix) / ".chromium-unavailable"
    if note.exists():
        pytest.skip(f"no {CHROMIUM}, and scripts/setup.sh could not install it: {note.read_text().strip()}")
    pytest.fail(f"no {CHROMIUM}: run scripts/setup.sh (it installs Debian's chromium with apt-get)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS)
        yield b
        b.close()


class Opened:
    """A page with its console errors and the network requests it tried (all aborted)."""

    def __init__(self, browser, html: Path | None = None) -> None:
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if html is not None:
            self.open(html)

    def open(self, html: Path) -> None:
        self.errors.clear()
        self.blocked.clear()
        self.page.goto(html.as_uri())

    def _route(self, route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def shown(self) -> list[str]:
        return self.page.evaluate("nngraphView.cy.nodes().map(n => n.id())")

    def click(self, node_id: str, double: bool = False) -> None:
        """A real mouse click (or double-click) on a drawn node: its centre, or for an open block a point in its
        top right margin (its centre may be one of its nodes, its top centre an edge entering it)."""
        x, y = self.page.evaluate(f"""(() => {{ const cy = nngraphView.cy, n = cy.$id({node_id!r}), z = cy.zoom();
            const b = n.renderedBoundingBox({{includeLabels: false}});
            const r = document.getElementById('cy').getBoundingClientRect();
            return n.isParent() ? [r.left + b.x2 - 12 * z, r.top + b.y1 + 8 * z]
                                : [r.left + (b.x1 + b.x2) / 2, r.top + (b.y1 + b.y2) / 2];
        }})()""")
        (self.page.mouse.dblclick if double else self.page.mouse.click)(x, y)

    def info_rows(self) -> dict[str, str]:
        return dict(self.page.evaluate("[...document.querySelectorAll('#info tr')]"
                                       ".map(r => [...r.cells].map(c => c.textContent))"))


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _assert_layered(opened: Opened, what: str) -> dict[str, list[float]]:
    """The drawing reads top to bottom (every edge's target box starts below its source box ends) and no two
    node boxes overlap (a block's box holds its own nodes); returns each node's centre."""
    geo = opened.page.evaluate(GEOMETRY)
    box = {n["id"]: n["box"] for n in geo["nodes"]}
    for s, t in geo["edges"]:
        assert box[t][1] > box[s][3], (what, s, t, box[s], box[t])
    nodes = geo["nodes"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if a["id"] not in b["within"] and b["id"] not in a["within"]:
                assert not _overlap(a["box"], b["box"]), (what, a["id"], b["id"], a["box"], b["box"])
    return {n["id"]: n["at"] for n in nodes}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return _page_file(SPECS / "gpt2_small.yaml", tmp_path_factory.mktemp("view"))


def test_every_zoo_spec_renders_offline_without_js_errors_top_to_bottom(browser, tmp_path):
    opened = Opened(browser)
    for path in sorted(SPECS.glob("*.yaml")):
        loaded: list = []
        opened.open(_page_file(path, tmp_path, loaded))
        graph = loaded[0]
        shown = opened.shown()
        # everything drawn is a graph node, a block scope or an input/output; the top-level nodes are all there
        top = {n for n, node in graph.nodes.items() if not node.scope}
        assert top <= set(shown), path.stem
        assert len(shown) <= len(graph.nodes) + len(graph.inputs) + len(graph.outputs) + len(graph.block_uses) * 64
        assert opened.errors == [] and opened.blocked == [], (path.stem, opened.errors, opened.blocked)
        _assert_layered(opened, path.stem)
    opened.page.close()


def test_gpt2_small_opens_as_12_collapsed_layers_top_to_bottom_and_a_block_expands(browser, gpt2):
    opened = Opened(browser, gpt2)
    shown = opened.shown()
    layers = [f"scope:h.{i}" for i in range(12)]
    assert sorted(s for s in shown if re.fullmatch(r"scope:h\.\d+", s)) == sorted(layers)
    assert not any(s.startswith("h.") for s in shown)  # no node inside a layer is drawn
    chain = ["tokens", "wte", "wpe", "drop", *layers, "ln_f", "lm_head", "output:logits"]
    assert set(shown) == {*chain, "scope:h"}
    at = _assert_layered(opened, "gpt2 collapsed")
    assert [at[n][1] for n in chain] == sorted(at[n][1] for n in chain)  # the dataflow order, downwards
    # a real double-click on layer 3 expands it: its own nodes appear, and its mlp block collapsed
    opened.click("scope:h.3", double=True)
    opened.page.wait_for_function("nngraphView.expanded.has('scope:h.3')")
    graph = load_spec(SPECS / "gpt2_small.yaml")
    direct = {n for n, node in graph.nodes.items() if node.scope == ("h", "3")}
    inner = set(opened.shown()) - set(shown)
    assert inner == direct | {"scope:h.3.mlp"} and len(direct) >= 6
    _assert_layered(opened, "gpt2 with h.3 open")
    # collapsing it again gives back the same picture: the layout is a function of what is shown
    opened.click("scope:h.3", double=True)
    opened.page.wait_for_function("!nngraphView.expanded.has('scope:h.3')")
    again = _assert_layered(opened, "gpt2 collapsed again")
    assert again.keys() == at.keys()
    assert all(again[k] == pytest.approx(at[k], abs=1e-6) for k in at)
    assert opened.errors == [] and opened.blocked == []


def test_a_collapsed_block_shows_its_totals_from_the_cost_module(browser, gpt2):
    opened = Opened(browser, gpt2)
    opened.click("scope:h.3")
    rows = opened.info_rows()
    graph = load_spec(SPECS / "gpt2_small.yaml")
    report = cost_report(graph, sizes_for(graph, {}, None)[0])
    d, t = 768, report["sizes"]["seq"]
    # one decoder layer of GPT-2 small, from its published shape: 12·d² + 13·d parameters; 2·T·12·d² for its
    # products and 4·d·T(T+1)/2 for causal scores and values; ten outputs of [1, T, d] floats but the two
    # [1, T, 4d] of the MLP's inside
    params, flops = 12 * d * d + 13 * d, 2 * t * 12 * d * d + 4 * d * t * (t + 1) // 2
    out_bytes = (8 * d + 2 * 4 * d) * t * 4
    assert (params, flops) == (7_087_872, 1_837_301_760)
    sums = scope_sums(report["nodes"], "h.3")  # what the page carries, from the cost module
    layer_row = next(b for b in report["blocks"] if b["name"] == "h")  # cost's row for the 12 layers
    assert (sums["params"], sums["flops"], sums["out_bytes"]) == (params, flops, out_bytes)
    assert [layer_row[k] for k in ("params", "flops", "out_bytes")] == [12 * params, 12 * flops, 12 * out_bytes]
    assert rows["block"] == "h.3: decoder_layer"
    assert rows["nodes"] == "10"
    assert rows["ops"] == "add ×2, dropout ×2, layer_norm ×2, linear ×2, attention ×1, gelu ×1"
    assert rows["params"] == "7,087,872 (7.09M)"
    assert rows["param_bytes"] == f"{4 * params:,} (28.35M)"
    assert rows["flops"] == "1,837,301,760 (1.84G)"
    assert rows["out_bytes"] == f"{out_bytes:,} (6.29M)"
    assert opened.errors == []


def test_search_finds_selects_and_describes_a_node(browser, gpt2):
    opened = Opened(browser, gpt2)
    opened.page.fill("#search", "h.7.mlp.c_fc")
    opened.page.press("#search", "Enter")
    assert opened.page.evaluate("nngraphView.cy.$(':selected').map(n => n.id())") == ["h.7.mlp.c_fc"]
    graph = load_spec(SPECS / "gpt2_small.yaml")
    row = next(r for r in cost_report(graph, sizes_for(graph, {}, None)[0])["nodes"] if r["name"] == "h.7.mlp.c_fc")
    rows = opened.info_rows()
    # the panel shows the node's op, shape, params, FLOPs and output bytes as `nngraph cost` gives them
    assert row["params"] == 768 * 3072 + 3072 and row["flops"] == 2 * 128 * 768 * 3072
    assert rows["op"] == "linear" and rows["shape"] == "[1, 128, 3072]"
    assert rows["params"] == "2,362,368 (2.36M)" and rows["flops"] == "603,979,776 (603.98M)"
    assert opened.errors == []


def test_with_a_target_a_node_shows_its_kernel_and_why(browser, tmp_path):
    graph = load_spec(SPECS / "gpt2_small.yaml")
    report = cost_report(graph, sizes_for(graph, {}, None)[0], "inference", "cpu")
    html = tmp_path / "gpt2_cpu.html"
    html.write_text(to_html(view_data(graph, report)), encoding="utf-8")
    opened = Opened(browser, html)
    opened.page.evaluate("nngraphView.find('h.0.attn')")
    row = next(r for r in report["nodes"] if r["name"] == "h.0.attn")
    rows = opened.info_rows()
    assert row["kernel"] and row["why"].startswith(row["kernel"])
    assert (rows["kernel"], rows["why"]) == (row["kernel"], row["why"])
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
    assert not opened.page.is_visible("#banner")  # a warning is no error


def _broken_view(tmp_path: Path, old: str, new: str) -> tuple[Path, Path, object]:
    """GPT-2 small with ``old`` replaced by ``new``, viewed through the CLI: (spec, page, the CLI's result)."""
    text = (SPECS / "gpt2_small.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    spec, html = tmp_path / "broken.yaml", tmp_path / "broken.html"
    spec.write_text(text.replace(old, new), encoding="utf-8")
    return spec, html, CliRunner().invoke(app, ["view", str(spec), "-o", str(html)])


def test_an_error_inside_a_block_is_marked_on_its_node_and_the_page_is_still_written(browser, tmp_path):
    spec, html, result = _broken_view(tmp_path, "approximate: tanh", "approximate: tanhx")
    (error,) = [d for d in check_spec(spec)[1] if d.severity == "error"]
    # the page is written and the command fails, printing the error where validate would
    assert result.exit_code == 1, result.output
    assert f"{error.pos}: error: {error.message}" in result.stderr and f"wrote {html}" in result.stderr
    opened = Opened(browser, html)
    # the page opens on the error: layer 0 and its mlp expanded, the gelu node marked and described
    assert opened.page.evaluate("nngraphView.cy.nodes('[sev = \"error\"]').map(n => n.id())") == ["h.0.mlp.act"]
    assert opened.page.evaluate("nngraphView.cy.$(':selected').map(n => n.id())") == ["h.0.mlp.act"]
    info = opened.page.inner_text("#info")
    assert f"{error.pos}: error: {error.message} (node h.0.mlp.act)" in info
    assert "used as 'h' (copy 0)" in error.notes[-1] and f"note: {error.notes[-1]}" in info
    assert "1 error: this spec does not validate" in opened.page.inner_text("#banner")
    # collapsing layer 0 carries the mark to the block that hides the node
    opened.click("scope:h.0", double=True)
    opened.page.wait_for_function("!nngraphView.expanded.has('scope:h.0')")
    assert opened.page.evaluate("nngraphView.cy.nodes('[sev = \"error\"]').map(n => n.id())") == ["scope:h.0"]
    _assert_layered(opened, "broken gpt2")
    assert opened.errors == [] and opened.blocked == []


def test_an_error_no_node_carries_is_shown_in_a_banner(browser, tmp_path):
    spec, html, result = _broken_view(tmp_path, "outputs: {logits: lm_head}", "outputs: {logits: lm_headx}")
    (error,) = [d for d in check_spec(spec)[1] if d.severity == "error"]
    assert result.exit_code == 1 and html.exists(), result.output
    opened = Opened(browser, html)
    banner = opened.page.inner_text("#banner")
    assert opened.page.is_visible("#banner") and "1 error: this spec does not validate" in banner
    assert f"{error.pos}: error: {error.message}" in banner and "lm_headx" in error.message
    assert opened.page.evaluate("nngraphView.cy.nodes('[sev = \"error\"]').length") == 0
    assert opened.errors == [] and opened.blocked == []


def test_spec_text_in_the_page_is_text_never_markup_or_script(browser, tmp_path):
    payload = "</script><script>window.PWNED=1</script><img src=x onerror=window.PWNED=2><!--"
    spec = tmp_path / "hostile.yaml"
    spec.write_text(UNUSED.replace("\ngraph:", f"\n{payload!r}: 1\ngraph:").replace("'", '"'), encoding="utf-8")
    (error,) = [d for d in check_spec(spec)[1] if d.severity == "error"]
    assert payload in error.message  # validate quotes the key back: the page gets the payload as it is
    html = tmp_path / "hostile.html"
    assert CliRunner().invoke(app, ["view", str(spec), "-o", str(html)]).exit_code == 1
    opened = Opened(browser, html)
    assert payload in opened.page.inner_text("#banner")
    assert opened.page.evaluate("window.PWNED") is None
    assert opened.page.evaluate("document.querySelectorAll('#banner img, #banner script').length") == 0
    assert opened.errors == [] and opened.blocked == []
