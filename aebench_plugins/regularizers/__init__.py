"""Built-in regularizers."""

from aebench import Regularizer, hookimpl
from aebench_plugins.regularizers.contractive import Contractive
from aebench_plugins.regularizers.denoising import Denoising
from aebench_plugins.regularizers.sparsity import KLSparsity, L1Sparsity


class NoRegularizer(Regularizer):
    """No corruption and no penalty: the plain training objective."""

    default = True  # what a suite without [[regularizers]] trains with


@hookimpl
def aebench_register_regularizers(register):
    register("none", NoRegularizer)
    register("l1", L1Sparsity)
    register("kl-sparsity", KLSparsity)
    register("denoising", Denoising)
    register("contractive", Contractive)
