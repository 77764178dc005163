"""What a person reads from a results folder: ``report`` (Markdown and HTML), ``drawing`` (the
figures), ``compare`` (two tables), ``reproduction`` (published values), ``progress`` (the
terminal)."""
