"""Suite files: validation with the place of each error, grid expansion, trial ids."""

import pytest

from aebench.plugins.manager import load_plugins
from aebench.run.suite import SuiteError, load_suite


def test_grid_expansion_gives_the_cartesian_product(plugins, tiny_suite):
    suite = load_suite(tiny_suite, plugins)
    assert suite.name == "tiny"
    assert len(suite.trials) == 2 * 2  # latent sizes x seeds
    combos = {(t.model.params["latent_dim"], t.seed) for t in suite.trials}
    assert combos == {(2, 0), (2, 1), (4, 0), (4, 1)}
    # fixed params pass as they are (a list stays a list), defaults are filled in
    trial = suite.trials[0]
    assert trial.model.params["hidden"] == [16]
    assert trial.model.params["code_activation"] == "linear"
    assert trial.regularizer.plugin == "none"  # the default regularizer


def test_trial_ids_are_stable_and_distinct(plugins, tiny_suite):
    first = [t.id for t in load_suite(tiny_suite, plugins).trials]
    again = [t.id for t in load_suite(tiny_suite, plugins).trials]
    assert first == again
    assert len(set(first)) == len(first)


def test_trial_id_changes_with_any_resolved_value(plugins, write_suite, tiny_suite_text):
    base = load_suite(write_suite(tiny_suite_text), plugins).trials[0].id
    changed = tiny_suite_text.replace("epochs = 2", "epochs = 3")
    assert load_suite(write_suite(changed, "b.toml"), plugins).trials[0].id != base


def test_output_defaults_to_results_and_the_suite_name(plugins, tiny_suite):
    assert str(load_suite(tiny_suite, plugins).output_dir()) == "results/tiny"


BASE = """
[suite]
name = "bad"
[[datasets]]
plugin = "digits"
[[models]]
plugin = "ae"
"""

BAD_SUITES = {
    "syntax error": ("[suite\nname = 1", r"invalid TOML: .*line 1"),
    "unknown top-level key": (BASE + "[trian]\nepochs = 1\n", r": trian: unknown key"),
    "unknown key in a section": (
        BASE + "[train]\nepoch = 1\n",
        r": train\.epoch: unknown key",
    ),
    "wrong type": (BASE + '[train]\nepochs = "ten"\n', r": train\.epochs: .*valid integer"),
    "negative learning rate": (BASE + "[train]\nlr = -0.1\n", r": train\.lr: .*greater than 0"),
    "unknown plugin": (
        BASE.replace('plugin = "ae"', 'plugin = "aee"'),
        r": models\[0\]\.plugin: unknown model 'aee'; did you mean 'ae'",
    ),
    "a parameter the plugin does not take": (
        BASE + "params = { rho = 0.1 }\n",
        r": models\[0\]\.params\.rho: model 'ae' takes no parameter 'rho'",
    ),
    "wrong type in a grid": (
        BASE + 'grid = { latent_dim = [2, "x"] }\n',
        r": models\[0\]\.grid\.latent_dim\[1\] = \"x\": model 'ae': .*valid integer",
    ),
    "out-of-range parameter": (
        BASE + "params = { latent_dim = 0 }\n",
        r": models\[0\]\.params\.latent_dim: model 'ae': .*greater than or equal to 1",
    ),
    "nested parameter": (
        BASE + "params = { hidden = [8, 0] }\n",
        r": models\[0\]\.params\.hidden\[1\]: model 'ae'",
    ),
    "empty grid": (
        BASE + "grid = { latent_dim = [] }\n",
        r": models\[0\]\.grid\.latent_dim: empty list",
    ),
    "same key in params and grid": (
        BASE + "params = { latent_dim = 2 }\ngrid = { latent_dim = [3] }\n",
        r": models\[0\]\.grid\.latent_dim: also set in models\[0\]\.params",
    ),
    "no models": (BASE.split("[[models]]")[0], r": models: required key is missing"),
    "unsafe suite name": (
        BASE.replace('name = "bad"', 'name = "../../x"'),
        r": suite\.name: .*pattern",
    ),
    "unknown metric": (
        BASE + '[eval]\nmetrics = ["recon_mse", "recon_mes"]\n',
        r": eval\.metrics\[1\]: unknown metric 'recon_mes'; did you mean 'recon_mse'",
    ),
    "duplicate seed": (BASE.replace('name = "bad"', 'name = "bad"\nseeds = [1, 1]'), r"seed"),
    "duplicate trial": (BASE + '[[models]]\nplugin = "ae"\n', r"same trial appears twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_SUITES))
def test_bad_suites_name_the_file_and_the_place(plugins, write_suite, case):
    text, pattern = BAD_SUITES[case]
    path = write_suite(text)
    with pytest.raises(SuiteError, match=pattern) as info:
        load_suite(path, plugins)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_a_missing_suite_file_is_a_suite_error(plugins, tmp_path):
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "absent.toml", plugins)


def test_a_known_trial_keeps_its_id(plugins):
    """Results folders are matched by trial id: how it is computed must not change."""
    suite = {
        "suite": {"name": "pinned"},
        "train": {"epochs": 1, "lr": 0.01},
        "datasets": [{"plugin": "digits"}],
        "models": [{"plugin": "ae", "params": {"latent_dim": 2}}],
    }
    [trial] = load_suite(suite, plugins).trials
    assert trial.id == "d736e280ce2518d7"


def test_the_trial_types_its_training_settings_as_the_suite_did(plugins, tiny_suite):
    trial = load_suite(tiny_suite, plugins).trials[0]
    settings = trial.settings()
    assert (settings.epochs, settings.batch_size) == (2, 64)
    assert settings.model_dump(exclude={"grid"}) == trial.train


def test_a_suite_without_regularizers_records_the_default_it_trains_with(plugins, tiny_suite):
    suite = load_suite(tiny_suite, plugins)
    assert [entry.plugin for entry in suite.spec.regularizers] == ["none"]  # saved with results


def test_without_a_default_regularizer_a_suite_that_names_none_is_one_line(tiny_suite):
    # The case: "unknown regularizer 'none' (known: none)" named a built-in.
    without = load_plugins(blocked=["aebench.regularizers"])
    with pytest.raises(SuiteError) as info:
        load_suite(tiny_suite, without)
    [line] = info.value.lines
    assert line == (
        f"{tiny_suite}: regularizers: none listed, and no installed regularizer declares itself"
        " the default: list one in [[regularizers]] (known: none)"
    )
