"""An example aebench plugin: what aebench imports through the entry point."""

from aebench import hookimpl
from aebench_plugin_example.models import TiedAutoencoder
from aebench_plugin_example.regularizers import CodeL2


@hookimpl
def aebench_register_models(register):
    register("tied-ae", TiedAutoencoder)


@hookimpl
def aebench_register_regularizers(register):
    register("code-l2", CodeL2)
