"""The contract: what plugins and the core agree on, and nothing else.

``hookspecs`` (the hooks), ``data`` / ``model`` / ``metric`` (the types plugins build and get),
``columns`` (the results table's vocabulary: ``Column``), ``checks`` (the contract enforced on
what a plugin returns). The bottom layer: it imports no other part of aebench.
"""
