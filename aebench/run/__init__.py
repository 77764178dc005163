"""Running a suite, in the order a trial takes.

``suite`` (suite.toml -> Trials), ``plan`` (what is left to do), ``loop`` (the run: lock, observers,
rows), ``executors`` / ``isolation`` (where a trial runs), ``trial`` (build, train, measure),
``train`` (the training loop, with ``optim``, ``auxiliary``, ``validation``, ``checkpoint``,
``threads``, ``stopping``), ``measure`` (the metrics), ``health``, ``kept`` (a trained trial read
back), and ``observing`` (what observers hear).
"""
