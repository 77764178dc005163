"""The built-in observers of a suite run, each registered through ``aebench_register_observers``
by an entry point of its own, exactly as a third party's tracker is.

Each module is a few lines that import their implementation only when a suite starts, so that
loading plugins (``aebench list``) stays cheap. pluggy orders them: figures and the report first
(``tryfirst``), MLflow last (``trylast``), since it logs the files the others wrote.
"""
