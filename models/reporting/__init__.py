"""Markdown and PNG renderings of the tools' reports: evaluation reports, model cards, doc
sections."""
