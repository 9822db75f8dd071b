"""Reports: terminal summary, JSON, Markdown, pytest-benchmark export, plots."""
