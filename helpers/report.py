"""Render the executed notebooks of a profile into report/report.html and report/report.pdf.

The reader never sees code: inputs are hidden, figures are embedded, and a table of contents is built
from the notebooks' headings. A code cell tagged `report-skip` (a table the results section shows for
every run, say) is left out of the report; Jupyter still shows it. A notebook the profile runs several
times (05, once per ResNet) is introduced once; paragraphs that tell the notebook's user where files go
or what a rerun does (NOTEBOOK_ONLY) are left out. Everything is offline (our own stylesheet, no scripts from a CDN); the
PDF comes from WeasyPrint, which needs neither LaTeX nor a browser.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from pathlib import Path

import nbformat

from helpers.display import MAX_COLUMNS
from helpers.notebook import project_root
from helpers.pipeline import list_notebooks

STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; max-width: 60em; margin: 2em auto;
       padding: 0 1.5em; color: #222; line-height: 1.45; font-size: 11pt; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; margin-top: 2em; }
h1, h2, h3 { page-break-after: avoid; }
img { max-width: 100%; height: auto; page-break-inside: avoid; }
table { border-collapse: collapse; font-size: 9pt; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
pre { background: #f7f7f7; padding: .5em; white-space: pre-wrap; font-size: 8.5pt; }
nav.toc { background: #fafafa; border: 1px solid #ddd; padding: .5em 1.5em; }
nav.toc ul { list-style: none; padding-left: 1em; margin: .2em 0; }
nav.toc li { margin: .25em 0; } nav.toc .sections { font-size: 90%; color: #555; }
.meta { color: #666; font-size: 9pt; }
.headline { border-left: 4px solid #4C72B0; background: #f4f7fb; padding: .5em 1em; margin: .8em 0; }
.stderr, .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"] { display: none; }
td { word-break: break-word; }
.readable-table p { margin: .8em 0 .2em; }
.readable-table em { color: #555; }
td.more { text-align: left; font-style: italic; color: #555; }
table.readable td:first-child, table.readable th { text-align: left; }
blockquote { border-left: 3px solid #bbb; margin: .6em 0; padding: .1em 1em; color: #333; }
@page { size: A4; margin: 1.1cm 1.2cm; @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt;
        color: #888; } }
/* On paper: a denser page, figures no taller than a third of it (each still whole), a two-column contents. */
@media print {
  body { font-size: 8pt; line-height: 1.25; max-width: none; margin: 0; padding: 0; }
  h1 { font-size: 15pt; margin-top: 1.2em; } h2 { font-size: 11.5pt; margin: 1em 0 .3em; }
  h3 { font-size: 10pt; margin: .8em 0 .2em; } p { margin: .35em 0; } ul { margin: .3em 0; }
  table { font-size: 7pt; width: 100%; } th, td { padding: 1px 3px; word-break: normal; }
  img { max-height: 5cm; max-width: 100%; width: auto; image-resolution: 150dpi; }
  .output_area.figure { display: inline-block; vertical-align: top; margin: 0 .5em .3em 0; max-width: 100%; }
  .output_area.figure .readable-table.narrow { width: 8.6cm; }
  .anchor-link { display: none; }
  nav.toc { font-size: 7.5pt; }
  pre { font-size: 7.5pt; }
}
"""

INTERVAL_CELL = re.compile(r"(?<=<td>)-?\d+(?:\.\d+)? \[-?\d+(?:\.\d+)?, -?\d+(?:\.\d+)?\](?=</td>)")
NARROW_AREA = re.compile(r'<div class="output_area">(\s*<div class="output_html[^"]*">\s*<div class=\'readable-table narrow\'>)')
ANCHOR_LINK = re.compile(r'<a class="anchor-link" href="[^"]*">¶</a>')
TBODY = re.compile(r"<tbody>.*?</tbody>", re.S)
TOTAL_ROWS = ("total", "all")  # a last row named so sums the table: it stays when the table is cut
MAX_TABLE_ROWS = 12  # a longer table is a dump, not something a reader reads on paper
HEADING = re.compile(r"<h([12])([^>]*)>(.*?)</h\1>", re.S)


def executed_notebooks(build: Path, root: Path) -> list[Path]:
    """The executed copies of the study's notebooks in `build`, in study order."""
    order = {p.stem: i for i, p in enumerate(list_notebooks(root))}
    found = [p for p in build.glob("*.ipynb") if p.stem.split("-")[0] in order]
    if not found:
        raise FileNotFoundError(f"no executed notebooks in {build}: run `python -m helpers.pipeline` first")
    try:  # the runs of one notebook in the order the profile lists them (resnet50 before resnet101)
        ran = list(json.loads((build / "pipeline.json").read_text()))
    except (OSError, ValueError):
        ran = []
    return sorted(found, key=lambda p: (order[p.stem.split("-")[0]], ran.index(p.stem) if p.stem in ran else len(ran),
                                        p.stem))


def demote_headings(source: str) -> str:
    """Markdown with every heading one level deeper ("## Train" -> "### Train")."""
    return re.sub(r"^(#{1,5}) ", r"#\1 ", source, flags=re.M)


def heading_lines(source: str) -> str:
    """Only the heading lines of a markdown cell."""
    return "\n".join(line for line in source.splitlines() if line.startswith("#"))


REPORT_SKIP = "report-skip"  # a cell tag: Jupyter shows the cell, the report leaves it out
# Paragraphs written for the person running the notebook (where its files go, what a re-run does): the
# report's reader needs the results and how they were made, not how to operate the notebook.
NOTEBOOK_ONLY = ("**Where files go.**", "**Changing a parameter.**", "**Running again with another setting.**")


def drop_notebook_only(source: str) -> str:
    """Markdown without the paragraphs that start with one of NOTEBOOK_ONLY."""
    paragraphs = re.split(r"\n\s*\n", source)
    return "\n\n".join(p for p in paragraphs if not p.lstrip().startswith(NOTEBOOK_ONLY))


def shape_runs(nb, run: str, first=None) -> None:
    """Shape one copy of a notebook the profile runs several times (05 once per ResNet), in place.

    Every copy gets a "Run `name`" heading after the introduction and its own headings one level
    deeper; copies after the `first` drop the introduction and keep only the headings of markdown the
    first copy already showed, so the report explains each step once.
    """
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    if not markdown:
        return
    intro = markdown[0]
    shown = {c.source for c in first.cells if c.cell_type == "markdown"} if first is not None else set()
    if first is not None:  # an output the first run showed already (the same split's sizes, say) is not repeated
        before = {json.dumps(o.get("data", o.get("text")), sort_keys=True, default=str)
                  for c in first.cells if c.cell_type == "code" for o in c.get("outputs", [])}
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs
                                if json.dumps(o.get("data", o.get("text")), sort_keys=True, default=str) not in before]
    for cell in markdown[1:]:
        if cell.source in shown:
            cell.source = heading_lines(cell.source)
        cell.source = demote_headings(cell.source)
    # A heading left with nothing under it before the next one (its cells were report-skip) goes too.
    kept = []
    for i, cell in enumerate(nb.cells):
        following = next((c for c in nb.cells[i + 1:]
                          if REPORT_SKIP not in c.get("metadata", {}).get("tags", [])), None)
        bare = cell.cell_type == "markdown" and cell is not intro and cell.source.strip() \
            and all(line.startswith("#") for line in cell.source.strip().splitlines())
        if bare and (following is None or following.cell_type == "markdown"):
            continue
        kept.append(cell)
    nb.cells = kept
    label = f"## Run `{run}`"
    if first is None:
        intro.source = intro.source + "\n\n" + label
    else:
        intro.source = label + "\n\nThe same steps as the first run above, for this run's settings."


def notebook_body(path: Path, run: str | None = None, first=None, appendix: bool = False) -> str:
    """One executed notebook as HTML without inputs, prompts or stderr (`run`, `first`: see shape_runs).

    In the `appendix` (every notebook but 07), a closing "## Summary" cell is left out.
    """
    from nbconvert import HTMLExporter  # noqa: PLC0415 - slow import

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if REPORT_SKIP not in c.get("metadata", {}).get("tags", [])]
    if appendix and nb.cells and nb.cells[-1].cell_type == "markdown" and nb.cells[-1].source.startswith("## Summary"):
        nb.cells = nb.cells[:-1]  # a step's closing words say which files it left and what runs next: notebook matters
    if run is not None:
        shape_runs(nb, run, nbformat.read(first, as_version=4) if first is not None else None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = drop_notebook_only(cell.source)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            for output in cell.outputs:  # a printed path reads as the project's, like the tables' paths
                if output.get("output_type") == "stream":
                    output["text"] = relative_paths_in(output.get("text", ""))
        if "parameters" in cell.get("metadata", {}).get("tags", []) or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.outputs = []
    nb.cells = merge_figure_cells(nb.cells)
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    body = ANCHOR_LINK.sub("", body)  # the pilcrow links point at ids nbconvert escapes differently: dead in a PDF
    body = TBODY.sub(shorten_tbody, body)
    # An interval "0.812 [0.781, 0.840]" in a table cell never breaks over two lines.
    body = INTERVAL_CELL.sub(lambda m: m.group(0).replace(" ", "&nbsp;"), body)
    # Figures and narrow tables flow side by side where they fit (the CSS makes these inline blocks).
    body = body.replace('<div class="output_area">\n<div class="output_png output_subarea">',
                        '<div class="output_area figure">\n<div class="output_png output_subarea">')
    return NARROW_AREA.sub(r'<div class="output_area figure">\1', body)


def relative_paths_in(text: str) -> str:
    """`text` with every absolute path in it made project-relative (helpers.display.relative_path)."""
    from helpers.display import ABSOLUTE_PATH, relative_path  # noqa: PLC0415

    return ABSOLUTE_PATH.sub(lambda m: relative_path(m.group(0)), text)


def shorten_tbody(match: re.Match) -> str:
    """A table body of more than MAX_TABLE_ROWS rows cut to that many, saying how many more the notebook holds."""
    rows = re.findall(r"<tr.*?</tr>", match.group(0), flags=re.S)
    if len(rows) <= MAX_TABLE_ROWS:
        return match.group(0)
    first_cell = re.search(r"<t[hd][^>]*>(.*?)</t[hd]>", rows[-1], flags=re.S)
    total = first_cell is not None and re.sub(r"<[^>]+>", "", first_cell.group(1)).strip().lower() in TOTAL_ROWS
    head = rows[:MAX_TABLE_ROWS - 1] if total else rows[:MAX_TABLE_ROWS]
    more = (f"<tr><td class='more' colspan='{MAX_COLUMNS}'>… {len(rows) - len(head) - total} more rows in the executed "
            "notebook and its CSV table</td></tr>")
    return "<tbody>" + "".join(head) + more + (rows[-1] if total else "") + "</tbody>"


def is_figure_cell(cell) -> bool:
    """A code cell whose only outputs (stderr aside) are images or narrow tables (helpers.display's "narrow")."""
    outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "stream"]

    def small(output) -> bool:
        data = output.get("data", {})
        return "image/png" in data or "readable-table narrow" in str(data.get("text/html", ""))

    return cell.cell_type == "code" and bool(outputs) and all(small(o) for o in outputs)


def merge_figure_cells(cells: list) -> list:
    """Consecutive cells of figures and narrow tables as one cell, so that they share a row on the page."""
    merged = []
    for cell in cells:
        if merged and is_figure_cell(cell) and is_figure_cell(merged[-1]):
            merged[-1].outputs = [*merged[-1].outputs, *[o for o in cell.outputs if o.get("output_type") != "stream"]]
        else:
            merged.append(cell)
    return merged


def add_toc(body: str) -> tuple[str, str]:
    """Give every h1/h2 an anchor and return (body, table of contents)."""
    items = []

    def anchor(match: re.Match) -> str:
        level, attrs, text = match.groups()
        existing = re.search(r'id="([^"]+)"', attrs)  # nbconvert's own ids: its anchor links point at them
        slug = existing.group(1) if existing else f"s{len(items)}"
        plain = re.sub(r"<[^>]+>", "", text).replace("¶", "").strip()
        items.append((int(level), slug, plain))
        return f'<h{level} id="{html.escape(slug, quote=True)}">{text}</h{level}>'

    body = HEADING.sub(anchor, body)

    def link(slug: str, text: str) -> str:
        return f"<a href='#{html.escape(slug, quote=True)}'>{html.escape(text)}</a>"

    # One entry per notebook, its sections run in after it: a contents page, not three.
    lines, sections = ["<nav class='toc'><strong>Contents</strong><ul>"], []
    for level, slug, text in items + [(1, None, None)]:
        if level == 1:
            if lines[-1].startswith("<li"):
                lines[-1] += (": <span class='sections'>" + " · ".join(sections) + "</span>" if sections else "") + "</li>"
            sections = []
            if slug is not None:
                lines.append(f"<li>{link(slug, text)}")
        else:
            sections.append(link(slug, text))
    lines.append("</ul></nav>")
    return body, "\n".join(lines)


def headline_box(path: Path) -> str:
    """The study's headline (results.headline, saved by notebook 07) as the report's opening paragraph, if saved."""
    try:
        text = json.loads(path.read_text(encoding="utf-8"))["text"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    from helpers.display import _inline  # noqa: PLC0415

    return f"<div class='headline'><strong>What we found.</strong> {_inline(str(text))}</div>"


def shown_path(path: Path, root: Path) -> str:
    """A path as the report shows it: relative to the project root where it lies inside it."""
    from helpers.display import relative_path  # noqa: PLC0415

    return relative_path(Path(path).resolve(), root)


def report_dir(profile: str, root: Path) -> Path:
    """report/ for the demo profile, report/<profile>/ for the others (so a DFDC report never mixes with it)."""
    return root / "report" if profile == "demo" else root / "report" / profile


def render_report(profile: str = "demo", out_dir: Path | None = None, root: Path | None = None,
                  pdf: bool = True, build_dir: Path | None = None) -> dict[str, Path]:
    """Write report.html (and report.pdf) from the profile's executed notebooks; returns their paths."""
    root = root or project_root()
    build_dir = Path(build_dir or root / "build" / profile)
    out_dir = Path(out_dir or report_dir(profile, root))
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = executed_notebooks(build_dir, root)
    # The reader starts with the results (07); the steps that made them follow as an appendix.
    results = [p for p in notebooks if p.stem.startswith("07")]
    steps = [p for p in notebooks if not p.stem.startswith("07")]
    parts = [notebook_body(p) for p in results]
    if steps:
        parts.append("<h1>Appendix: how the numbers were made</h1><p>Each step of the study as it ran, "
                     "notebook by notebook: what it did, its parameters' effects, and what it produced.</p>")
        copies: dict[str, list[Path]] = {}
        for path in steps:
            copies.setdefault(path.stem.split("-")[0], []).append(path)
        for path in steps:
            same = copies[path.stem.split("-")[0]]
            if len(same) == 1:
                parts.append(notebook_body(path, appendix=True))
            else:  # one introduction for a notebook that ran several times
                first = None if path == same[0] else same[0]
                parts.append(notebook_body(path, run=path.stem.split("-", 1)[-1], first=first, appendix=True))
    body, toc = add_toc("\n<hr/>\n".join(parts))
    headline = headline_box(out_dir / "tables" / "headline.json")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Deepfake detection study ({profile})</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<p class='meta'>Rendered {time.strftime('%Y-%m-%d %H:%M')} from the executed notebooks of the "
            f"<code>{profile}</code> profile ({html.escape(shown_path(build_dir, root))}).</p>{headline}{toc}{body}"
            "</body></html>")
    paths = {"html": out_dir / "report.html"}
    paths["html"].write_text(page, encoding="utf-8")
    if pdf:
        import logging  # noqa: PLC0415

        from weasyprint import HTML  # noqa: PLC0415 - slow import

        logging.getLogger("weasyprint").setLevel(logging.ERROR)  # font-subsetting notices are not the reader's problem
        logging.getLogger("fontTools").setLevel(logging.ERROR)

        paths["pdf"] = out_dir / "report.pdf"
        HTML(string=page, base_url=str(out_dir)).write_pdf(paths["pdf"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.report", description="Render report/ from executed notebooks.")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--out", type=Path, help="output folder (default: report/)")
    parser.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    args = parser.parse_args(argv)
    try:
        paths = render_report(args.profile, args.out, pdf=not args.no_pdf)
    except FileNotFoundError as err:
        print(f"report: {err}", file=sys.stderr)
        return 1
    for kind, path in paths.items():
        print(f"{kind.upper():4s} {path}")
    headline = report_dir(args.profile, project_root()) / "tables" / "headline.json"
    if headline.exists():
        print("\n" + json.loads(headline.read_text())["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
