"""What a run leaves on disk, and how it is written and read back.

``files`` (atomic writes, no link followed), ``paths`` (where aebench may write and cache),
``lock`` (one writer per folder), ``table`` (the results table and its journal), ``trials`` (a
trial's folder: configuration, curves, weights), ``references`` (published values to reproduce).
"""
