"""RecBole hyper.test parsing: the four kinds, RecBole's spellings, and errors naming file:line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfseq.config import ConfigError
from tuning.hyper_file import parse_text, read_params_file
from tuning.spaces import grid, to_hyperparameters

# RecBole's published GRU4Rec / SASRec lines (spaces inside the list, RecBole's n_layers), plus
# the three numeric kinds in RecBole's comma form and in a space-separated form.
HYPER_TEST = """\
# tuned on ml-1m
learning_rate loguniform -8,0

dropout_prob uniform 0.1 0.4
hidden_size quniform 64,256,64
attn_dropout_prob choice [0.2, 0.5]
n_layers choice [1,2,3]
"""


def test_parses_all_four_kinds_with_recbole_spellings():
    lr, dropout, hidden, attn, layers = parse_text(HYPER_TEST, "hyper.test")
    assert (lr.name, lr.kind, lr.low, lr.high, lr.source) == ("learning_rate", "loguniform", -8.0, 0.0, "hyper.test:2")
    # loguniform bounds are exponents (hyperopt's hp.loguniform): values in [e^-8, e^0].
    assert lr.bounds() == pytest.approx((math.exp(-8), 1.0))
    assert (dropout.kind, dropout.low, dropout.high, dropout.source) == ("uniform", 0.1, 0.4, "hyper.test:4")
    # quniform 64,256,64: round(uniform(64, 256) / 64) * 64 -> 64, 128, 192, 256, as ints.
    assert hidden.grid() == (64, 128, 192, 256)
    assert attn.grid() == (0.2, 0.5)
    assert layers.name == "num_layers" and layers.grid() == (1, 2, 3)  # RecBole's n_layers
    assert [p.discrete for p in (lr, dropout, hidden, attn, layers)] == [False, False, True, True, True]


def test_quniform_with_a_fractional_step_includes_both_ends():
    (dropout,) = parse_text("dropout_prob quniform 0,0.5,0.1")
    # 0.1 * 3 is 0.30000000000000004 in floating point; the grid holds the clean decimal.
    assert dropout.grid() == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def test_choice_mixing_ints_and_floats_is_one_float_choice():
    (dropout,) = parse_text("dropout_prob choice [0, 0.25, 0.5]")
    assert dropout.grid() == (0.0, 0.25, 0.5) and all(type(v) is float for v in dropout.grid())


def test_keras_tuner_samples_loguniform_as_recbole_does():
    (lr,) = parse_text("learning_rate loguniform -8,-2")
    hp = to_hyperparameters([lr])
    samples = np.array([hp.space[0].random_sample(seed) for seed in range(4000)])
    logs = np.log(samples)
    # exp(uniform(-8, -2)): log values uniform on [-8, -2] -> mean -5, variance 6^2 / 12 = 3.
    assert logs.min() >= -8 - 1e-9 and logs.max() <= -2 + 1e-9
    assert abs(logs.mean() - (-5.0)) < 0.1
    assert abs(logs.var() - 3.0) < 0.2


def test_grid_of_a_file_is_the_product_in_file_order():
    params = parse_text("learning_rate choice [0.01, 0.001]\nnum_layers choice [1, 2, 3]\n")
    assert grid(params) == [
        {"learning_rate": lr, "num_layers": n} for lr in (0.01, 0.001) for n in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("learning_rate choice [0.01]\nhidden_size\n", 2, ["expected 'name kind values'"]),
        ("learning_rate choice [0.01]\n\nhidden_size between 1,2\n", 3, ["unknown kind 'between'"]),
        ("learning_rate uniform 0.1\n", 1, ["needs 2 numbers", "low,high"]),
        ("learning_rate uniform 0.1,abc\n", 1, ["needs 2 numbers"]),
        ("hidden_size quniform 64,256\n", 1, ["needs 3 numbers", "low,high,q"]),
        ("hidden_size quniform 64,256,0\n", 1, ["step q > 0"]),
        ("dropout_prob uniform 0.5,0.1\n", 1, ["low < high"]),
        ("num_layers choice 3\n", 1, ["needs a list"]),
        ("num_layers choice [1, 2\n", 1, ["needs a list"]),
        ("num_layers choice []\n", 1, ["at least one value"]),
        ("num_layers choice [[1, 2], [3]]\n", 1, ["numbers, strings or booleans"]),
        ("num_layers choice [1, 1]\n", 1, ["a value twice"]),
        ("learning_rate choice [0.1]\nlearning_rate choice [0.2]\n", 2, ["already defined at hyper.test:1"]),
    ],
)
def test_malformed_line_is_an_error_naming_the_line(text, line, words):
    with pytest.raises(ConfigError) as error:
        parse_text(text, "hyper.test")
    message = str(error.value)
    assert message.startswith(f"hyper.test:{line}: "), message
    for word in words:
        assert word in message


def test_empty_file_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no hyperparameters"):
        parse_text("# nothing\n\n", "empty.test")
    with pytest.raises(ConfigError, match="missing.test: params file not found"):
        read_params_file(str(tmp_path / "missing.test"))
    path = tmp_path / "ok.test"
    path.write_text("temperature choice [0.05, 0.1]\n")
    (temperature,) = read_params_file(str(path))
    assert temperature.source == f"{path}:1" and temperature.grid() == (0.05, 0.1)
