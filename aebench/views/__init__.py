"""What a person reads from a results folder: ``report`` (Markdown and HTML, laid out by
``ranking``, ``layout`` and ``figure_blocks``, written by ``markdown`` and ``html``), ``drawing``
(the figures), ``compare`` (two tables), ``reproduction`` (published values), ``progress`` (the
terminal)."""
