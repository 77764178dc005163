"""Built-in datasets: image sets (digits, torchvision's), synthetic sets with known density, and
sprites generated from known factors (dSprites)."""

from aebench import hookimpl
from aebench_plugins.datasets.digits import digits
from aebench_plugins.datasets.dsprites import dsprites, shapes_small
from aebench_plugins.datasets.mixture2d import mixture2d
from aebench_plugins.datasets.ppca import ppca
from aebench_plugins.datasets.torchvision_sets import cifar10, fashion_mnist, kmnist, mnist


@hookimpl
def aebench_register_datasets(register):
    register("digits", digits)
    register("mnist", mnist)
    register("fashion-mnist", fashion_mnist)
    register("kmnist", kmnist)
    register("cifar10", cifar10)
    register("ppca", ppca)
    register("mixture2d", mixture2d)
    register("dsprites", dsprites)
    register("shapes-small", shapes_small)
