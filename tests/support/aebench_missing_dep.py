"""A third-party plugin distribution whose module cannot be imported: its dependency is missing."""

import aebench_dependency_that_is_not_installed  # noqa: F401

from aebench import hookimpl


@hookimpl
def aebench_register_datasets(register):
    register("faraway", lambda: None)
