from typing import Annotated, Literal

import pytest
from pydantic import Field

from aebench.plugins.params import describe, params_model, type_name


class Model:
    def __init__(
        self,
        info,
        hidden: list[Annotated[int, Field(ge=1)]] = (8,),
        mode: Literal["a", "b"] = "a",
        rate: Annotated[float, Field(gt=0, lt=1)] = 0.5,
        steps: int | None = None,
    ):
        pass


def test_class_parameters_skip_the_info_argument():
    model = params_model("m", Model, skip_first=True)
    assert list(model.model_fields) == ["hidden", "mode", "rate", "steps"]
    assert model.model_validate({"rate": 0.25}).rate == 0.25


def test_an_int_is_a_fine_float_but_a_string_is_no_int():
    def f(lr: float = 0.1, epochs: int = 1):
        pass

    model = params_model("f", f)
    assert model.model_validate({"lr": 1}).lr == 1.0
    with pytest.raises(ValueError):
        model.model_validate({"epochs": "3"})


def test_described_types_are_readable():
    shown = {p.name: p.type for p in describe(params_model("m", Model, skip_first=True))}
    assert shown == {
        "hidden": "list[int >= 1]",
        "mode": "'a' | 'b'",
        "rate": "float > 0 < 1",
        "steps": "int | None",
    }


def test_required_parameters_are_marked():
    def f(x: int, y: int = 2):
        pass

    params = {p.name: p for p in describe(params_model("f", f))}
    assert params["x"].required and not params["y"].required
    assert type_name(int) == "int"


def test_a_factorys_schema_is_built_once_and_each_factory_has_its_own():
    def first(lr: float = 0.1):
        pass

    def second(lr: float = 0.1, epochs: int = 1):
        pass

    assert params_model("f", first) is params_model("f", first)  # load_plugins() registers again
    assert list(params_model("f", second).model_fields) == ["lr", "epochs"]
    assert list(params_model("f", first).model_fields) == ["lr"]
