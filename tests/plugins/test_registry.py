from typing import Annotated

import pytest
from pydantic import Field

from aebench.plugins.registry import DuplicateNameError, Registry, UnknownNameError


def factory(width: Annotated[int, Field(ge=1)] = 3, name: str = "x"):
    """A test factory."""
    return (width, name)


def test_register_and_get():
    registry = Registry("model")
    registry.register("one", factory, plugin="p")
    entry = registry.get("one")
    assert entry.factory is factory
    assert entry.plugin == "p"
    assert entry.description == "A test factory."
    assert registry.names() == ["one"]
    assert "one" in registry and len(registry) == 1


def test_unknown_name_suggests_the_nearest():
    registry = Registry("model")
    registry.register("vae", factory, plugin="p")
    registry.register("conv-vae", factory, plugin="p")
    with pytest.raises(UnknownNameError, match=r"unknown model 'vea'; did you mean 'vae'"):
        registry.get("vea")


def other_factory():
    """Another factory, registered under a name already taken."""


def test_a_duplicate_name_names_both_plugins_and_the_first_registration_stays():
    registry = Registry("model")
    registry.register("vae", factory, plugin="first")
    with pytest.raises(DuplicateNameError) as info:
        registry.register("vae", other_factory, plugin="second")
    assert str(info.value) == (
        "model 'vae' is registered by both 'first' and 'second':"
        " dropped from 'second' (the later), kept from 'first'"
    )
    entry = registry.get("vae")
    assert (entry.factory, entry.plugin) == (factory, "first")
    assert registry.names() == ["vae"]


def test_params_come_from_the_signature():
    registry = Registry("dataset")
    registry.register("d", factory, plugin="p")
    params = registry.get("d").params
    assert params.model_validate({}).model_dump() == {"width": 3, "name": "x"}
    with pytest.raises(ValueError):
        params.model_validate({"width": 0})
    with pytest.raises(ValueError):
        params.model_validate({"width": "3"})  # strict: TOML types are not coerced
    with pytest.raises(ValueError):
        params.model_validate({"height": 1})


def test_skip_first_leaves_out_the_core_argument():
    def model(info, latent_dim: int = 2):
        return info

    registry = Registry("model", skip_first=True)
    registry.register("m", model, plugin="p")
    assert list(registry.get("m").params.model_fields) == ["latent_dim"]


class Plain:
    """A factory that declares itself the default of its kind."""

    default = True


class Other(Plain):
    """Another that claims it (by inheriting the declaration)."""


def test_the_default_is_the_entry_that_declares_itself_so():
    registry = Registry("regularizer")
    registry.register("undeclared", factory, plugin="p")
    assert registry.default() is None
    registry.register("plain", Plain, plugin="first")
    assert registry.default().name == "plain"


def test_a_default_claimed_twice_names_both_and_neither_is_taken():
    registry = Registry("regularizer")
    registry.register("plain", Plain, plugin="first")
    registry.register("other", Other, plugin="second")  # registering it is not an error
    with pytest.raises(DuplicateNameError) as info:
        registry.default()
    assert str(info.value) == (
        "regularizer 'plain' (first) and regularizer 'other' (second) declare themselves the"
        " default regularizer; only one may"
    )
