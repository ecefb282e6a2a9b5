"""report.html and `edgekit report` (issue 8), asserted on a copy of the tiny build's folder."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.report import confusion as confusion_report
from edgekit.report import html as html_report
from edgekit.report import plots
from edgekit.report.text import to_markdown, variant_row
from edgekit.units import size_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("verdict", "variants", "accuracy-size", "host-latency", "per-op", "memory", "confusion-matrix",
            "training")
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}
# Attributes through which a page can make a browser fetch something.
REFERENCING = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "xlink:href"}


class Page(HTMLParser):
    """What the tests look at: ids, the attributes that reference resources, images, CSS, the visible text,
    and whether every element is closed in order."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.references: list[tuple[str, str, str]] = []
        self.images: list[str] = []
        self.css: list[str] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.misnested: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag not in VOID:
            self.open.append(tag)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        self.references += [(tag, name, value or "") for name, value in attrs if name in REFERENCING]
        if tag == "img":
            self.images.append(attributes.get("src", ""))
        if "style" in attributes:
            self.css.append(attributes["style"] or "")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.misnested.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
            return
        self.open.pop()

    def handle_data(self, data):
        if self.open and self.open[-1] == "style":
            self.css.append(data)
        else:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def rendered(tiny_build, tmp_path_factory):
    """`edgekit report` run twice on a copy of the tiny build (the shared folder stays as the build left it):
    (folder, report.json, the page's bytes and the PNGs' bytes of each run, the CLI's output)."""
    _, directory, report = tiny_build
    folder = tmp_path_factory.mktemp("report") / directory.name
    shutil.copytree(directory, folder)
    runs = []
    for _ in range(2):
        result = CliRunner().invoke(main, ["report", str(folder)])
        assert result.exit_code == 0, result.output + repr(result.exception)
        runs.append({path.relative_to(folder).as_posix(): path.read_bytes()
                     for path in [folder / "report.html", *sorted((folder / "plots").glob("*.png"))]})
    return folder, report, runs, result.output


@pytest.fixture(scope="module")
def page(rendered) -> Page:
    return Page(rendered[2][0]["report.html"].decode())


def test_the_page_parses_and_holds_every_section(page):
    assert not page.misnested and not page.open, (page.misnested, page.open)
    assert set(SECTIONS) <= set(page.ids)
    assert page.tags.count("section") >= len(SECTIONS)


def test_report_prints_the_path_of_the_page(rendered):
    folder, _, _, output = rendered
    assert output == f"{folder / 'report.html'}\n"


def test_the_page_holds_the_numbers_of_report_json(page, rendered):
    _, report, _, _ = rendered
    text = page.visible
    for variant in report["variants"]:  # the variants table: size, gzip, sparsity, metric, latencies, fit
        for cell in variant_row(variant):
            assert cell in text, (variant["name"], cell)
        stats = variant["latency_ms"]
        for figure in ("min", "median", "mean", "p90", "p99"):
            assert f"{stats[figure]:.4g}" in text, (variant["name"], figure)
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    for check in selected["fit"]["checks"]:  # the verdict card: every budget with its headroom
        assert check["summary"] in text, check["budget"]
    assert "FITS" in text if report["fits"] else "DOES NOT FIT" in text
    for op in selected["target_latency"]["per_op"]:  # the per-op breakdown of the selected variant
        assert f"{op['macs']:,}" in text and f"{op['ms']:.4g}" in text, op
    assert size_text(selected["flash"]["model_bytes"]) in text
    assert size_text(selected["ram"]["required_bytes"]) in text
    for phase, info in report["training"].items():  # the training phases, float to QAT
        assert phase in text and f"{info['val_loss']:.4f}" in text, phase
    assert set(report["training"]) >= {"float", "prune", "qat"}


def test_the_page_references_nothing_outside_it(page, rendered):
    html = rendered[2][0]["report.html"].decode()
    assert page.references, "the figures are images: some src= must be there"
    assert all(value.startswith("data:image/png;base64,") for _, _, value in page.references), \
        [(tag, name, value[:40]) for tag, name, value in page.references if not value.startswith("data:")]
    assert not {"script", "link", "iframe", "object", "embed", "base", "frame"} & set(page.tags)
    css = " ".join(page.css)
    for needle in ("url(", "@import", "http:", "https:", "//"):
        assert needle not in css, needle
    assert "@import" not in html and "<link" not in html and "http:" not in html and "https:" not in html
    assert "default-src 'none'" in html  # the browser itself refuses to fetch anything


def _pixels(png: bytes) -> np.ndarray:
    import matplotlib.image

    assert png.startswith(PNG_SIGNATURE)
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_every_embedded_image_decodes_and_is_not_blank(page):
    assert len(page.images) == len(plots.PLOTS)  # a classification build has every figure
    for source in page.images:
        pixels = _pixels(base64.b64decode(source.removeprefix("data:image/png;base64,"), validate=True))
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0


def test_the_png_files_are_the_embedded_figures_and_not_blank(page, rendered):
    folder, _, runs, _ = rendered
    files = {name: png for name, png in runs[0].items() if name.endswith(".png")}
    assert sorted(files) == sorted(f"plots/{name}.png" for name in plots.PLOTS)
    embedded = {base64.b64decode(source.removeprefix("data:image/png;base64,")) for source in page.images}
    assert set(files.values()) == embedded
    for png in files.values():
        assert _pixels(png).std() > 0


def test_report_rebuilds_the_same_bytes(rendered):
    _, _, (first, second), _ = rendered
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_the_recomputed_confusion_matrix_is_the_selected_variants_accuracy(rendered, page):
    folder, report, _, _ = rendered
    section = confusion_report.recompute_confusion(folder, report)
    matrix = np.array(section["matrix"])
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    assert section["variant"] == report["selected"] and section["classes"] == [str(i) for i in range(10)]
    assert matrix.sum() == report["dataset"]["test"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(selected["metric"]["value"])
    assert f"{np.trace(matrix)} correct" in page.visible


def test_confusion_counts_true_against_predicted():
    section = confusion_report.confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], ["a", "b", "c"])
    assert section["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert section["classes"] == ["a", "b", "c"] and section["samples"] == 6
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_report.confusion([0, 3], [0, 1], ["a", "b", "c"])


def test_a_stored_confusion_matrix_is_shown_and_a_missing_one_explained(rendered, tmp_path):
    folder, report, _, _ = rendered
    stored = {**report, "confusion_matrix": {"variant": report["selected"], "split": "test",
                                             **confusion_report.confusion([0] * 417 + [1] * 3, [0] * 417 + [0] * 3,
                                                                     ["cat", "dog"])}}
    text = Page(html_report.render_html(stored, {})).visible
    assert "417" in text and "cat" in text and "417 correct (99.29%)" in text
    # Without one, and without a dataset that loads, the page says so and drops an earlier figure.
    copy = tmp_path / "build"
    shutil.copytree(folder, copy)
    assert (copy / "plots" / "confusion_matrix.png").is_file()
    unscored = {key: value for key, value in report.items() if key != "confusion_matrix"}
    written = html_report.write_html_report(copy, {**unscored, "task": "regression"})
    assert "plots/confusion_matrix.png" not in written and written[-1] == "report.html"
    assert not (copy / "plots" / "confusion_matrix.png").exists()
    assert "Not a classification task" in (copy / "report.html").read_text()


def test_markdown_and_json_formats_print_the_folders_report(rendered):
    folder, report, _, _ = rendered
    markdown = CliRunner().invoke(main, ["report", str(folder), "--format", "md"])
    assert markdown.exit_code == 0
    assert markdown.stdout == to_markdown(report) == (folder / "report.md").read_text()
    as_json = CliRunner().invoke(main, ["report", str(folder), "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == report
    assert as_json.stdout == (folder / "report.json").read_text()


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_a_folder_without_report_json_is_one_line_and_exit_2(tmp_path, fmt):
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--format", fmt])
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {tmp_path}: no report.json, so not a build folder (`edgekit build` writes "
                             "one)\n")
    assert not (tmp_path / "report.html").exists()


def test_the_build_writes_the_same_page_and_lists_it_in_the_manifest(tiny_build, rendered):
    _, directory, _ = tiny_build
    manifest = json.loads((directory / "manifest.json").read_text())
    listed = {entry["path"] if isinstance(entry, dict) else entry for entry in manifest["files"]}
    assert {"report.html", "plots/accuracy_vs_size.png", "plots/confusion_matrix.png"} <= listed
    assert (directory / "report.html").read_bytes() == rendered[2][0]["report.html"]
    assert "confusion_matrix" in json.loads((directory / "report.json").read_text())


# --- Issue 19 item 7: figures and bars that read at a Raspberry Pi's scale and on a microcontroller's ------------

def test_a_share_of_a_budget_never_reads_empty_or_full_unless_it_is():
    assert [plots.share_text(s) for s in (0.0012, 0.004, 0.042, 0.42, 0.9996, 1.0, 1.3, 0.0)] == \
        ["0.12%", "0.4%", "4.2%", "42%", "99.9%", "100%", "130%", "0%"]
    assert plots.share_text(1e-6) == "under 0.01%"


def test_a_budget_barely_used_is_written_on_its_bar(rendered):
    _, report, _, _ = rendered
    ram = {**_check(report, "ram"), "value": 3800.0, "limit": 3145728.0, "ok": True}  # a Pi: 0.12% of 3 GB
    bar = Page(html_report._budget_bar(ram))
    assert "0.12% used: 3.7 MiB of 3 GiB" in bar.visible
    assert bar.css == ["width:0.121%"]  # to scale; the words carry what the sliver cannot
    latency = Page(html_report._budget_bar({**_check(report, "latency"), "value": 0.2, "limit": 50.0}))
    assert "0.4% used: 0.2 ms of 50 ms" in latency.visible


def _check(report, budget):
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    return next(c for c in selected["fit"]["checks"] if c["budget"] == budget)


def _float_and_onnx(report):
    """The tiny build's report with its float32 TFLite and ONNX variants on one spot, as they nearly are in a real
    build (same accuracy, sizes 0.1% apart)."""
    variants = [dict(v) for v in report["variants"]]
    first = next(v for v in variants if v["format"] == "tflite" and v["precision"] == "float32")
    onnx = next(v for v in variants if v["format"] == "onnx")
    onnx.update(size_bytes=first["size_bytes"] - 700, gzip_bytes=first["gzip_bytes"] - 300, metric=first["metric"])
    return {**report, "variants": variants}, first["name"], onnx["name"]


def test_the_accuracy_axis_holds_the_float_models_noise_and_marks_the_drop_in_points(rendered):
    from edgekit.report.plotstyle import drawn

    _, report, _, _ = rendered
    figure = drawn(plots.accuracy_figure, report)
    axes = figure.axes[0]
    reference, samples = report["optimization"]["float_test_metric"], report["dataset"]["test"]
    noise = 2 * (reference * (1 - reference) / samples) ** 0.5
    low, high = axes.get_ylim()
    assert low < reference - noise and high > reference + noise  # a drop is seen against the test set's noise
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    for variant in report["variants"]:
        gain = round((variant["metric"]["value"] - reference) * 100, 2)
        assert any(label.startswith(f"{variant['name']}") and (f"{gain:+.2f} points vs float" in label if gain else
                                                               "as the float model" in label) for label in labels)
    assert any(a.get_ylabel() == "points against the float model" for a in figure.axes[1:] + axes.child_axes)
    assert f"one sample = {100 / samples:.2g} points" in axes.get_title()


def test_float_and_onnx_markers_on_one_spot_are_drawn_apart(rendered):
    from edgekit.report.plotstyle import drawn

    report, first, onnx = _float_and_onnx(rendered[1])
    figure = drawn(plots.accuracy_figure, report)
    axes = figure.axes[0]
    markers = {c.get_gid(): c for c in axes.collections if c.get_gid()}
    for kind in ("file", "gzip"):
        one, other = markers[f"{first}:{kind}"], markers[f"{onnx}:{kind}"]
        apart = np.hypot(*(one.get_offset_transform().transform(one.get_offsets())[0]
                           - other.get_offset_transform().transform(other.get_offsets())[0]))
        radii = (one.get_sizes()[0] ** 0.5 + other.get_sizes()[0] ** 0.5) / 2 * figure.dpi / 72  # s: points²
        assert apart >= radii, kind  # neither covers the other's centre
    assert any(f"{first} and {onnx} nearly coincide" in t.get_text() for t in axes.texts)


def test_the_ram_chart_names_its_parts_in_kib_and_keeps_a_far_budget_off_its_scale(rendered):
    from edgekit.report.plotstyle import drawn

    _, report, _, _ = rendered
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    pi = {**report, "budgets": {**report["budgets"], "ram_kb": 3145728.0}}
    figure = drawn(plots.memory_figure, pi, selected)
    ram_axes, flash_axes = figure.axes[:2]
    legend = ram_axes.get_legend()
    assert legend is not None and "KiB" in legend.get_title().get_text()
    assert all(t.get_text().endswith((" B", " KiB", " MiB")) for t in legend.get_texts())
    assert legend.get_window_extent().y0 > flash_axes.get_window_extent().y1  # above the RAM chart, not the flash
    bar = ram_axes.patches[-1].get_window_extent()
    assert bar.x1 - ram_axes.get_window_extent().x0 > 0.5 * ram_axes.get_window_extent().width
    assert any(t.get_text().startswith("budget 3 GiB") for t in ram_axes.texts)
    assert ram_axes.get_xlabel() == "KiB (1024 bytes)"
    near = {**report, "budgets": {**report["budgets"], "ram_kb": selected["ram"]["required_bytes"] / 1024 * 2}}
    ram_axes = drawn(plots.memory_figure, near, selected).axes[0]
    assert [line.get_xdata()[0] for line in ram_axes.lines] == [selected["ram"]["required_bytes"] / 1024 * 2]


def test_each_op_is_labelled_by_the_largest_term_of_its_cost_model_cycles(tiny_build):
    from edgekit import targets
    from edgekit.estimate import estimate_latency
    from edgekit.model_info import inspect_model

    _, directory, _ = tiny_build
    info = inspect_model(directory / "int8.tflite")
    labels = set()
    for name in ("rpi4", "esp32-s3"):
        target = targets.load(name)
        model = target.latency
        table, _ = model.rates("int8", target.cpu.features)
        for op, estimate in zip(info.ops, estimate_latency(info, target, "int8").per_op, strict=True):
            terms = {"compute": op.macs / table[op.kind] if op.macs and op.kind in table else 0.0,
                     "memory": op.bytes / model.bytes_per_cycle, "overhead": model.op_overhead_cycles}
            assert terms[estimate.bound] == max(terms.values()), (name, op.op, terms, estimate.bound)
            labels.add(estimate.bound)
    assert {"compute", "overhead"} <= labels  # a pooling or a reshape on a Pi is its dispatch, not its bytes
