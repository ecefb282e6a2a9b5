"""What a build says: report.json's contract, Markdown and terminal rows (text), the HTML page (html) and its
plots, and the manifest that vouches for a finished folder."""
