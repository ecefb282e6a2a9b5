"""What a build says: report.json's contract, Markdown and terminal rows (text), the HTML page (html) and its
plots, and the manifest that vouches for a finished folder."""


def regenerate(directory, fmt: str) -> str:
    """What `edgekit report` prints for a build folder: report.json's text, report.md's Markdown, or the path of
    report.html (written anew with its plots). A folder that is not a build gets the same one-line error in
    every format."""
    from edgekit.report.html import HTML, REPORT_JSON, load_report, rebuild_html
    from edgekit.report.text import to_markdown

    report = load_report(directory)
    if fmt == "json":
        return (directory / REPORT_JSON).read_text()
    if fmt == "md":
        return to_markdown(report)
    rebuild_html(directory)
    return f"{directory / HTML}\n"
