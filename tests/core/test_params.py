"""Typed, ranged hyper-parameters (issue 14.2): every method's parameters are declared with a type and
a range; ``--set``, run configs and presets are checked against them before any work, and a bad value
is refused in one line naming where it came from, the key, the value and what is allowed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import ConfigError, UnlearnbenchError, UserError
from harness.core.params import describe, method_specs, validate_run_file
from harness.core.registry import METHODS
from harness.training.runner import build_method, parse_overrides, parse_value, resolve_params

REPO = Path(__file__).resolve().parents[2]


# -- the audit's bad values, each refused in one line ---------------------------------------------
@pytest.mark.parametrize("method, item, expected", [
    ("npo", "learning_rate=-1", "learning_rate = -1 is not allowed; expected a finite number > 0"),
    ("npo", "learning_rate=fast", "learning_rate = 'fast' is not allowed; expected a finite number > 0"),
    ("npo", "learning_rate=nan", "learning_rate = nan is not allowed"),
    ("npo", "learning_rate=inf", "learning_rate = inf is not allowed"),
    ("npo", "learning_rate=0", "learning_rate = 0 is not allowed"),
    ("npo", "learning_rate=true", "learning_rate = true is not allowed"),
    ("npo", "beta=0", "beta = 0 is not allowed; expected a finite number > 0"),
    ("npo", "beta=-0.1", "beta = -0.1 is not allowed"),
    ("npo", "beta=[1,2]", "beta = [1, 2] is not allowed"),
    ("npo", "lora_r=0", "lora_r = 0 is not allowed; expected an integer >= 1"),
    ("npo", "lora_r=2.5", "lora_r = 2.5 is not allowed; expected an integer >= 1"),
    ("npo", "lora_alpha=-8", "lora_alpha = -8 is not allowed"),
    ("npo", "lora_dropout=1.5", "lora_dropout = 1.5 is not allowed; expected a finite number >= 0 and < 1"),
    ("npo", "seed=abc", "seed = 'abc' is not allowed"),
    ("npo", "seed=1.5", "seed = 1.5 is not allowed"),
    ("npo", "weight_decay=-1", "weight_decay = -1 is not allowed"),
    ("npo", "max_grad_norm=-1", "max_grad_norm = -1 is not allowed"),
    ("npo", "warmup_steps=-3", "warmup_steps = -3 is not allowed"),
    ("npo", "warmup_epochs=-0.5", "warmup_epochs = -0.5 is not allowed"),
    ("npo", "max_length=1", "max_length = 1 is not allowed; expected an integer >= 2"),
    ("npo", "eval_sample=-1", "eval_sample = -1 is not allowed"),
    ("npo", "scheduler=fancy", "scheduler = 'fancy' is not allowed; expected one of 'linear', 'cosine'"),
    ("npo", "lora_target_modules=[]", "lora_target_modules = [] is not allowed"),
    ("simnpo", "gamma=big", "gamma = 'big' is not allowed; expected a finite number >= 0"),
    ("grad_diff", "forget_weight=heavy", "forget_weight = 'heavy' is not allowed"),
    ("kl", "kl_weight=-1", "kl_weight = -1 is not allowed"),
    ("rmu", "steering_coeff=-5", "steering_coeff = -5 is not allowed"),
    ("npo_gdr_klr", "formulation=other", "formulation = 'other' is not allowed; expected one of 'standard', "
                                         "'zjuklab'"),
    ("zjuklab_merge", "density=0", "density = 0 is not allowed; expected a finite number > 0 and <= 1"),
    ("zjuklab_merge", "weights=[1]", "weights = [1] is not allowed; expected a list of 2 items, each a finite number"),
    ("zjuklab_merge", "how=best", "how = 'best' is not allowed; expected one of 'linear'"),
])
def test_a_bad_value_is_refused_in_one_line_naming_source_key_value_and_range(method, item, expected):
    with pytest.raises(ConfigError) as err:
        resolve_params(method, parse_overrides([item]), source_names=["--set"])
    text = str(err.value)
    assert text.startswith("--set: ") and expected in text and "\n" not in text


@pytest.mark.parametrize("item, key, value", [
    ("learning_rate=3", "learning_rate", 3), ("learning_rate=1e-5", "learning_rate", 1e-5),
    ("lora_r=8", "lora_r", 8), ("max_steps=null", "max_steps", None), ("eval_every=0", "eval_every", 0),
    ("eval_every=epoch", "eval_every", "epoch"), ("save_param_snapshots_at=[0,2]", "save_param_snapshots_at", [0, 2]),
    ("lora_target_modules=[\"q_proj\"]", "lora_target_modules", ["q_proj"]), ("seed=7", "seed", 7),
])
def test_good_values_pass_unchanged(item, key, value):
    params = resolve_params("npo", parse_overrides([item]), source_names=["--set"])
    assert params[key] == value and type(params[key]) is type(value)


def test_a_preset_value_is_named_by_its_preset(monkeypatch):
    cls = METHODS.get("npo_gdr_klr")
    monkeypatch.setitem(cls.presets, "broken", {"beta": -1})
    with pytest.raises(ConfigError, match=r"^preset 'broken' of method 'npo_gdr_klr': beta = -1 is not allowed"):
        resolve_params("npo_gdr_klr", {"preset": "broken"}, source_names=["--set"])


def test_nested_zjuklab_parent_parameters_are_checked_when_the_method_is_built():
    params = resolve_params("zjuklab_merge", {"over_params": {"beta": 0}}, source_names=["--set"])
    with pytest.raises(ConfigError, match=r"zjuklab_merge over_params: beta = 0 is not allowed"):
        build_method("zjuklab_merge", params)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_default_preset_and_conformance_setting_is_valid(name):
    """A preset or default outside its declared range fails here, not in a user's run."""
    cls = METHODS.get(name)
    build_method(name, resolve_params(name))
    for preset in getattr(cls, "presets", {}) or {}:
        build_method(name, resolve_params(name, {"preset": preset}))
    conformance = getattr(cls, "conformance_params", None)
    if conformance:
        build_method(name, resolve_params(name, conformance))
    for key, spec in method_specs(cls).items():
        assert spec.allowed, key


def test_describe_reads_as_words():
    from typing import Literal, Optional

    from harness.core.params import NonNegativeFloat, PositiveInt

    assert describe(PositiveInt) == "an integer >= 1"
    assert describe(Optional[NonNegativeFloat]) == "a finite number >= 0 or null"
    assert describe(Literal["a", "b"]) == "one of 'a', 'b'"


# -- run config files ----------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, expected", [
    ("seed", "abc", "seed = 'abc' is not allowed; expected an integer >= 0 and < 4294967296"),
    ("seed", 1.5, "seed = 1.5 is not allowed"),
    ("seed", -1, "seed = -1 is not allowed"),
    ("evaluate", "no", "evaluate = 'no' is not allowed; expected true or false"),
    ("dtype", "float8", "dtype = 'float8' is not allowed; expected one of 'float32'"),
    ("label", "", "label = '' is not allowed; expected a non-empty string or null"),
    ("params", [1], "params = [1] is not allowed; expected a table"),
])
def test_run_file_values_are_checked(key, value, expected):
    with pytest.raises(ConfigError) as err:
        validate_run_file({key: value}, "npo.toml")
    assert str(err.value).startswith("npo.toml: ") and expected in str(err.value)


@pytest.mark.parametrize("overrides, expected", [
    ({"max_new_tokens": "many"}, "max_new_tokens = 'many' is not allowed; expected an integer"),
    ({"max_new_tokens": 4.5}, "max_new_tokens = 4.5 is not allowed; expected an integer"),
    ({"progress": "yes"}, "progress = 'yes' is not allowed; expected true or false"),
    ({"mode": "best"}, "mode = 'best' is not allowed; expected one of"),
    ({"batch_size": [1]}, "batch_size = [1] is not allowed"),
])
def test_run_file_eval_options_are_checked_like_the_command_line(overrides, expected):
    from harness.cli.commands.unlearn import _eval_namespace

    with pytest.raises(UserError) as err:
        _eval_namespace(overrides, "npo.toml [eval]")
    assert str(err.value).startswith("npo.toml [eval]: ") and expected in str(err.value)


def test_run_file_eval_options_convert_like_the_command_line():
    from harness.cli.commands.unlearn import _eval_namespace

    ns = _eval_namespace({"max_new_tokens": 8, "progress": False}, "x")
    assert ns.max_new_tokens == 8 and ns.no_progress is True


def test_cli_refuses_a_bad_set_value_before_loading_anything(tmp_path):
    """The model path does not exist: the refusal proves the value was checked first."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from harness.cli.main import main; sys.exit(main())",
                           "unlearn", "--method", "npo", "--model", str(tmp_path / "no-model"), "--data",
                           str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), "--set", "beta=0"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "unlearnbench unlearn: error: --set: beta = 0 is not allowed; expected a finite number > 0"]
    assert not (tmp_path / "out").exists()


# -- fuzzing: any --set value ends in a valid method or one ConfigError, never a traceback ----------
_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-inf", "true", "false", "null", "[]", "[1,2]", "{}", "{\"a\": 1}", "1e400",
                     "-1", "0", "1", "0.5", "1.5", "2", "'x'", "epoch", "lora", "full", "cosine", "all-linear"]),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _fuzz_set_values(method: str, key: str, text: str) -> None:
    item = f"{key}={text}"
    try:
        params = resolve_params(method, parse_overrides([item]), source_names=["--set"])
        obj = build_method(method, params)
        if hasattr(obj, "training_settings"):
            obj.training_settings()
    except UnlearnbenchError as exc:
        assert "\n" not in str(exc) and str(exc)
    except ValueError as exc:  # TrainSettings' own cross-field checks: caught by the CLI as a user error
        assert "\n" not in str(exc)


_KEYS = {name: sorted(METHODS.get(name).defaults()) for name in ("npo", "npo_gdr_klr", "rmu", "simnpo", "zjuklab_merge")}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=_TEXT)
def test_fuzz_set_values(data, text):
    method = data.draw(st.sampled_from(sorted(_KEYS)))
    key = data.draw(st.sampled_from(_KEYS[method]))
    _fuzz_set_values(method, key, text)


def test_parse_value_keeps_json_then_toml_then_text():
    assert math.isnan(parse_value("nan"))  # TOML's nan: a float, then refused as not finite
    assert parse_value("[1,2]") == [1, 2] and parse_value("cosine") == "cosine" and parse_value("1e-4") == 1e-4


def test_run_file_fuzz(tmp_path):
    """Random top-level run-config values: accepted or one ConfigError (the file is named)."""
    values = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(), st.text(max_size=8),
                       st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                            max_size=2))

    @settings(max_examples=500, deadline=None)
    @given(cfg=st.dictionaries(st.sampled_from(["seed", "evaluate", "dtype", "label", "params", "eval", "mia",
                                                "device", "benchmark", "out"]), values, max_size=5))
    def run(cfg):
        try:
            validate_run_file(cfg, "run.toml")
        except ConfigError as exc:
            assert str(exc).startswith("run.toml: ") and "\n" not in str(exc)

    run()
