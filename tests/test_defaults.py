"""``cyprop train --data NAME`` with no other flags learns each built-in data set, in
seconds, with the defaults of ``cli.TRAIN_DEFAULTS``; the header says which values are
defaults, and a flag given wins over its default."""

import re
import time

import pytest

from cyprop import cli

#: The least test accuracy each data set's defaults reach with the default seed (xor is
#: tested on its four training points; the others on a quarter held out).
EXPECTED = {"xor": 1.0, "moons": 0.98, "spirals": 0.90, "digits": 0.96}


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def accuracy_of(out):
    return float(re.search(r"test accuracy: ([\d.]+)%", out).group(1)) / 100


def line(out, label):
    return re.search(rf"^{label}:\s+(.*)$", out, re.M).group(1)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_defaults_learn_each_data_set(capsys, name):
    if name == "digits":
        pytest.importorskip("sklearn")
    start = time.perf_counter()
    out = run(capsys, "train", "--data", name, "--no-compare")
    seconds = time.perf_counter() - start
    assert accuracy_of(out) >= EXPECTED[name], out
    # A few seconds at most on a small shared machine (well under 1 s of training).
    assert seconds < 30, seconds
    entry = cli.TRAIN_DEFAULTS[name]
    sizes = re.search(r"^network:\s+([\d-]+) ", out, re.M).group(1).split("-")
    assert [int(s) for s in sizes[1:-1]] == list(entry["hidden"])
    defaults = line(out, "defaults")
    for flag, value in (("--activation", entry["activation"]),
                        ("--optimizer", entry["optimizer"]),
                        ("--lr", f"{entry['lr']:g}"),
                        ("--epochs", str(entry["epochs"])),
                        ("--batch-size", str(entry["batch_size"]))):
        assert f"{flag} {value}" in defaults, (flag, defaults)
    assert f"--layers {','.join(sizes)}" in defaults
    assert f"for {name}" in defaults and "given:" not in out
    assert ("--momentum" in defaults) == bool(entry.get("momentum"))
    assert f"{entry['epochs']} epochs, batch size {entry['batch_size']}" in line(out, "optimizer")


def test_every_data_kind_has_complete_defaults():
    kinds = set(cli.BUILTIN_DATA) | {"csv", "mnist"}
    assert set(cli.TRAIN_DEFAULTS) == kinds
    for kind, entry in cli.TRAIN_DEFAULTS.items():
        assert {"hidden", "activation", "optimizer", "lr", "epochs", "batch_size"} <= set(entry)
        assert set(entry) <= {"hidden", "activation", "optimizer", "lr", "momentum", "epochs",
                              "batch_size"}, kind
        assert entry["optimizer"] in {n.lower() for n in cli.OPTIMIZERS}
        assert entry["activation"] in cli.HIDDEN_ACTIVATIONS


def test_flags_given_win_and_are_listed(capsys):
    out = run(capsys, "train", "--data", "spirals", "--epochs", "3", "--activation", "relu",
              "--layers", "2,5,2", "--no-compare")
    assert line(out, "given") == "--layers 2,5,2 --activation relu --epochs 3"
    defaults = line(out, "defaults")
    assert "--optimizer adam --lr 0.01 --batch-size 10" in defaults
    assert "--epochs" not in defaults and "--layers" not in defaults
    assert "network:   2-5-2" in out and "relu hidden" in out
    assert "3 epochs" in out and len(re.findall(r"^epoch \d+/3 ", out, re.M)) == 3


def test_another_optimizer_does_not_take_the_data_sets_rate_or_momentum(capsys):
    # Another sgd gets 0.5, as before the table existed.
    out = run(capsys, "train", "--data", "moons", "--optimizer", "sgd", "--epochs", "1",
              "--no-compare")
    assert "SGD(learning_rate=0.5, momentum=0.0," in out
    assert "--lr 0.5" in line(out, "defaults")
    assert line(out, "given") == "--optimizer sgd --epochs 1"
    # The data set's own optimizer named explicitly keeps the data set's rate.
    out = run(capsys, "train", "--data", "moons", "--optimizer", "adam", "--epochs", "1",
              "--no-compare")
    assert "Adam(learning_rate=0.01," in out


def test_digits_rate_and_momentum_stay_with_its_sgd(capsys):
    pytest.importorskip("sklearn")
    out = run(capsys, "train", "--data", "digits", "--optimizer", "adam", "--epochs", "1",
              "--no-compare")
    assert "Adam(learning_rate=0.001," in out and "--momentum" not in out
    out = run(capsys, "train", "--data", "digits", "--lr", "0.05", "--epochs", "1",
              "--no-compare")
    assert "SGD(learning_rate=0.05, momentum=0.9," in out
    assert "--momentum 0.9" in line(out, "defaults")


def test_the_command_line_example_of_plain_sgd_learns_digits(capsys):
    # `--optimizer sgd --lr 0.5` (the command line's example) kept digits' momentum of 0.9,
    # an effective rate of 5, and ended at 14% test accuracy
    pytest.importorskip("sklearn")
    out = run(capsys, "train", "--data", "digits", "--layers", "64,32,10", "--epochs", "30",
              "--batch-size", "10", "--optimizer", "sgd", "--lr", "0.5", "--no-compare")
    assert "SGD(learning_rate=0.5, momentum=0.0," in out
    assert float(re.search(r"test accuracy: ([\d.]+)%", out).group(1)) >= 90
    out = run(capsys, "train", "--data", "digits", "--optimizer", "sgd", "--momentum", "0.5",
              "--epochs", "1", "--no-compare")
    assert "SGD(learning_rate=0.1, momentum=0.5," in out


def test_momentum_for_the_default_adam_is_a_usage_error(capsys):
    status = cli.main(["train", "--data", "moons", "--momentum", "0.9", "--epochs", "1"])
    _, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1
    assert "--momentum does not apply to --optimizer adam (the default for moons" in err


def test_many_epochs_print_every_kth_line(capsys):
    out = run(capsys, "train", "--data", "xor", "--no-compare")      # 300 epochs
    shown = [int(n) for n in re.findall(r"^epoch (\d+)/300  loss ", out, re.M)]
    assert shown == [1, *range(20, 301, 20)]
    out = run(capsys, "train", "--data", "xor", "--epochs", str(cli.MAX_EPOCH_LINES),
              "--no-compare")
    assert len(re.findall(r"^epoch \d+/", out, re.M)) == cli.MAX_EPOCH_LINES


def test_help_shows_the_table(capsys):
    status = cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert status == 0
    assert re.search(r"^  spirals +IN,32,OUT +tanh +adam +0\.01 +400 +10$", out, re.M), out
    assert re.search(r"^  digits +IN,64,OUT +tanh +sgd --momentum 0\.9 +0\.1 +40 +16$", out,
                     re.M), out
    assert re.search(r"^  csv:, mnist: +IN,32,OUT +sigmoid +sgd +0\.5 +30 +10$", out, re.M)
