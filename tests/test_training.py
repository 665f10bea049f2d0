"""The training loop: schedules, stopping rules, validation and early stopping,
callbacks, History and its plot, progress output, partial_fit, dropout, max-norm,
sample and class weights, per-layer activations and forward(return_hidden=True).

Every feature runs on both backends; the parity tests at the end train the same
network with each feature on both and compare (float64 rtol 1e-9, float32 1e-4).
"""

import copy
import os
import sys

import numpy as np
import pytest

import cyprop
from cyprop import _loop, _reference
from cyprop._training import Dropout
from cyprop.schedules import Constant, Cosine, InverseScaling, ReduceOnPlateau, StepDecay

from conftest import assert_failed_write_keeps_the_file, assert_refuses_a_fifo_in_a_child

BACKENDS = ("cython", "numpy")
DTYPES = ("float64", "float32")
RTOL = {"float64": 1e-9, "float32": 1e-4}
ATOL = {"float64": 1e-12, "float32": 1e-5}


def blobs(n=40, n_features=4, n_classes=3, seed=0, spread=1.0):
    """Gaussian blobs: learnable, so losses fall smoothly under full-batch SGD."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    return centres[labels] + spread * rng.normal(size=(n, n_features)), labels


def make(sizes=(4, 6, 3), backend="numpy", dtype="float64", seed=0, **kwargs):
    return cyprop.Network(list(sizes), backend=backend, dtype=dtype, seed=seed, **kwargs)


def snapshot(net):
    """Every parameter, layer by layer (W then b), as one float64 vector (a copy)."""
    return np.concatenate([p.ravel() for W, b in zip(net.weights, net.biases)
                           for p in (W, b)]).astype(np.float64)


def restore(net, flat):
    """The inverse of ``snapshot``: write the parameters back, through the public views."""
    offset = 0
    for W, b in zip(net.weights, net.biases):
        W[...] = flat[offset:offset + W.size].reshape(W.shape)
        offset += W.size
        b[...] = flat[offset:offset + b.size]
        offset += b.size


class Recorder:
    """A callback keeping each epoch's index, logs and parameters."""

    def __init__(self):
        self.epochs, self.logs, self.params = [], [], []

    def on_epoch_end(self, net, epoch, logs):
        self.epochs.append(epoch)
        self.logs.append(dict(logs))
        self.params.append(snapshot(net))


def assert_close(actual, desired, dtype, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(desired, dtype=np.float64),
                               rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=what)


# ======================================================================== schedules
def expected_rates(schedule, initial, epochs):
    """Each schedule's definition, written out independently of cyprop.schedules."""
    e = np.arange(epochs)
    if isinstance(schedule, Constant):
        return np.full(epochs, initial)
    if isinstance(schedule, InverseScaling):
        return initial / (e + 1.0) ** schedule.power
    if isinstance(schedule, StepDecay):
        return initial * schedule.gamma ** (e // schedule.step_size)
    if isinstance(schedule, Cosine):
        t = np.minimum(e, schedule.period) / schedule.period
        return schedule.min_rate + (initial - schedule.min_rate) * (1 + np.cos(np.pi * t)) / 2
    raise AssertionError(schedule)


SCHEDULES = {
    "constant": lambda: Constant(),
    "inverse-sqrt": lambda: InverseScaling(0.5),
    "inverse-linear": lambda: InverseScaling(1.0),
    "step": lambda: StepDecay(step_size=2, gamma=0.5),
    "cosine": lambda: Cosine(period=4, min_rate=0.01),     # 6 epochs: past its period too
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_formulas(name):
    schedule = SCHEDULES[name]()
    rates = [schedule.rate(epoch, 0.3) for epoch in range(12)]
    np.testing.assert_allclose(rates, expected_rates(schedule, 0.3, 12), rtol=1e-15)


def test_cosine_ends_at_min_rate_and_stays_there():
    schedule = Cosine(period=5, min_rate=0.02)
    assert schedule.rate(0, 0.4) == 0.4
    assert schedule.rate(5, 0.4) == pytest.approx(0.02) == schedule.rate(50, 0.4)


def test_cosine_near_the_largest_float_stays_finite():
    # (initial - min) * (1 + cos) overflowed to -inf for rates near 1e308
    schedule = Cosine(period=4, min_rate=1e308)
    rates = [schedule.rate(epoch, 1e-3) for epoch in range(6)]
    assert rates[4] == rates[5] == 1e308
    assert all(np.isfinite(rates)) and rates == sorted(rates)


def test_step_and_cosine_match_torch():
    torch = pytest.importorskip("torch")
    for ours, make_theirs, epochs in [
            (StepDecay(3, 0.3), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.3), 12),
            (Cosine(7, 0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, 0.01),
             8)]:                      # torch's cosine rises again after its period: stop there
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        theirs = make_theirs(optimizer)
        for epoch in range(epochs):
            assert ours.rate(epoch, 0.5) == pytest.approx(optimizer.param_groups[0]["lr"],
                                                          rel=1e-12), (ours, epoch)
            optimizer.step()
            theirs.step()


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_logs_and_uses_the_scheduled_rate(backend, name):
    # Plain SGD has no state, so six scheduled epochs equal six one-epoch fits, each
    # with SGD at that epoch's rate.
    X, y = blobs()
    schedule = SCHEDULES[name]()
    rates = expected_rates(schedule, 0.2, 6)
    net = make(backend=backend)
    optimizer = cyprop.SGD(0.2)
    history = net.fit(X, y, epochs=6, batch_size=7, optimizer=optimizer, schedule=schedule,
                      shuffle=False, verbose=0)
    np.testing.assert_allclose(history.learning_rate, rates, rtol=1e-15)
    assert optimizer.initial_learning_rate == 0.2
    assert optimizer.learning_rate == pytest.approx(rates[-1], rel=1e-15)

    by_hand = make(backend=backend)
    for rate in rates:
        by_hand.fit(X, y, epochs=1, batch_size=7, optimizer=cyprop.SGD(float(rate)),
                    shuffle=False, verbose=0)
    np.testing.assert_array_equal(snapshot(net), snapshot(by_hand))


def test_each_fit_restarts_the_schedule_from_the_initial_rate():
    X, y = blobs()
    net = make()
    net.fit(X, y, epochs=4, optimizer=cyprop.Adam(0.01), schedule=StepDecay(1, 0.5), verbose=0)
    history = net.fit(X, y, epochs=2, schedule=StepDecay(1, 0.5), verbose=0)
    assert history.learning_rate == [0.01, 0.005]


# ReduceOnPlateau: torch.optim.lr_scheduler.ReduceLROnPlateau in 'min' mode with an
# absolute threshold (min_delta), cooldown 0: an epoch improves when its value is below
# best - min_delta; after more than ``patience`` epochs without improvement the rate is
# multiplied by ``factor`` (not below min_rate) and the count restarts.
LOSSES = [1.0, 0.9, 0.895, 0.95, 0.85, 0.86, 0.84, 0.845, 0.843, 0.839, 0.5, 0.6, 0.6, 0.6,
          0.6, 0.6, 0.6, 0.6, 0.6, 0.6]


def test_reduce_on_plateau_by_hand():
    # patience 1, min_delta 0.01: improvements at epochs 0, 1, 4, 9 and 10; the rate
    # halves after the second epoch in a row without one.
    schedule = ReduceOnPlateau(factor=0.5, patience=1, min_delta=0.01, min_rate=0.0)
    rates = []
    for loss in LOSSES[:14]:
        rates.append(schedule.rate(len(rates), 1.0))
        schedule.update({"loss": loss})
    # loss:          1.0 .9 .895 .95 .85  .86  .84  .845  .843  .839   .5     .6     .6
    assert rates == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.125, 0.125,
                     0.0625]


@pytest.mark.parametrize("patience, min_delta, min_rate", [(0, 0.0, 0.0), (1, 0.01, 0.0),
                                                           (2, 0.001, 0.06), (3, 0.2, 0.0)])
def test_reduce_on_plateau_matches_torch(patience, min_delta, min_rate):
    torch = pytest.importorskip("torch")
    schedule = ReduceOnPlateau(factor=0.5, patience=patience, min_delta=min_delta,
                               min_rate=min_rate)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=patience, threshold=min_delta,
        threshold_mode="abs", cooldown=0, min_lr=min_rate, eps=0.0)
    for epoch, loss in enumerate(LOSSES):
        assert schedule.rate(epoch, 0.4) == pytest.approx(optimizer.param_groups[0]["lr"],
                                                          rel=1e-12), epoch
        schedule.update({"loss": loss})
        theirs.step(loss)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduce_on_plateau_in_fit_follows_the_validation_loss(backend):
    # A rate too high for the problem: the validation loss stalls and the rate must drop
    # exactly when the rule says, replayed here on the recorded validation losses.
    X, y = blobs(n=60, spread=2.5)
    net = make(sizes=(4, 10, 3), backend=backend)
    history = net.fit(X[:45], y[:45], epochs=15, batch_size=5, optimizer=cyprop.SGD(0.8),
                      validation_data=(X[45:], y[45:]), seed=1, verbose=0,
                      schedule=ReduceOnPlateau(factor=0.5, patience=1, monitor="val_loss"))
    replay = ReduceOnPlateau(factor=0.5, patience=1)
    expected = []
    for val_loss in history.val_loss:
        expected.append(replay.rate(len(expected), 0.8))
        replay.update({"loss": val_loss})
    assert history.learning_rate == pytest.approx(expected, rel=1e-15)
    assert min(history.learning_rate) < 0.8                 # it did reduce


def test_reduce_on_plateau_needs_what_it_monitors():
    X, y = blobs()
    with pytest.raises(ValueError, match="val_loss"):
        make().fit(X, y, epochs=2, schedule=ReduceOnPlateau(monitor="val_loss"), verbose=0)


@pytest.mark.parametrize("make_schedule", [
    lambda: InverseScaling(0), lambda: StepDecay(0), lambda: StepDecay(2, gamma=0),
    lambda: StepDecay(2, gamma=1.5), lambda: Cosine(0), lambda: Cosine(5, min_rate=-1),
    lambda: ReduceOnPlateau(factor=1.0), lambda: ReduceOnPlateau(patience=-1),
    lambda: ReduceOnPlateau(monitor="accuracy")])
def test_invalid_schedules_are_refused(make_schedule):
    with pytest.raises(ValueError):
        make_schedule()


@pytest.mark.parametrize("make_schedule, name, value, error", [
    (InverseScaling, "power", -1.0, ValueError), (StepDecay, "step_size", 0, ValueError),
    (StepDecay, "gamma", 2.0, ValueError), (lambda: Cosine(5), "period", 0, ValueError),
    (lambda: Cosine(5), "min_rate", -1.0, ValueError),
    (ReduceOnPlateau, "factor", 3.0, ValueError), (ReduceOnPlateau, "patience", "3", TypeError),
    (ReduceOnPlateau, "monitor", "accuracy", ValueError)])
def test_schedule_parameters_set_by_hand_are_checked_by_fit(make_schedule, name, value, error):
    """Set after the schedule was made, they were used as they were: rates that grow
    (gamma 2, power -1), an unnamed ZeroDivisionError, a refusal after an epoch trained."""
    X, y = blobs()
    net = make()
    params = net._params.copy()
    schedule = make_schedule()
    setattr(schedule, name, value)
    with pytest.raises(error, match=name):
        net.fit(X, y, epochs=3, schedule=schedule, verbose=0)
    np.testing.assert_array_equal(net._params, params)
    assert net.history.epochs == 0
    setattr(schedule, name, getattr(make_schedule(), name))
    schedule.label = "mine"   # an attribute of the user's own is no parameter
    net.fit(X, y, epochs=1, schedule=schedule, verbose=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_schedule, name, value, error", [
    (InverseScaling, "power", -1.0, ValueError), (StepDecay, "step_size", 0, ValueError),
    (StepDecay, "gamma", 2.0, ValueError), (lambda: Cosine(5), "period", 0, ValueError),
    (ReduceOnPlateau, "factor", 3.0, ValueError)])
def test_schedule_parameters_set_by_a_callback_are_checked_before_the_next_epoch(
        backend, make_schedule, name, value, error):
    """Set between epochs, as a callback sets the optimizer's, they were used as they
    were: rates that grow (gamma 2, power -1), an unnamed ZeroDivisionError."""
    X, y = blobs()
    net = make(backend=backend)
    schedule = make_schedule()

    class Change:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 1:
                setattr(schedule, name, value)
                self.params = net._params.copy()

    callback = Change()
    with pytest.raises(error, match=name):
        net.fit(X, y, epochs=4, schedule=schedule, verbose=0, callbacks=[callback])
    np.testing.assert_array_equal(net._params, callback.params)   # epoch 3 never ran
    assert net.history.epochs == 2


# =================================================================== stopping rules
def free_run(backend, epochs=12):
    """The records of an unstopped run, to choose thresholds that trigger mid-way."""
    X, y = blobs()
    net = make(backend=backend)
    return net.fit(X, y, epochs=epochs, batch_size=40, optimizer=cyprop.SGD(0.3), seed=0,
                   verbose=0)


def stopped_run(backend, epochs=12, **rules):
    X, y = blobs()
    return make(backend=backend).fit(X, y, epochs=epochs, batch_size=40,
                                     optimizer=cyprop.SGD(0.3), seed=0, verbose=0, **rules)


def first(values, condition):
    return next(i for i, v in enumerate(values) if condition(v))


@pytest.mark.parametrize("backend", BACKENDS)
def test_epochs_rule(backend):
    history = stopped_run(backend, epochs=5)
    assert history.epochs == 5 and history.stop_reason == "epochs"


@pytest.mark.parametrize("rule", ["target_loss", "target_error", "min_update"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_stopping_rule_triggers_at_the_first_epoch_that_meets_it(backend, rule):
    free = free_run(backend)
    values = {"target_loss": free.loss,
              "target_error": [1 - a for a in free.accuracy],
              "min_update": free.largest_update}[rule]
    # a threshold between epoch 4's value and the smallest one: met first at some epoch
    # after the first, and before the end
    threshold = (values[4] + min(values)) / 2
    stop = first(values, lambda v: v < threshold)
    assert 0 < stop < free.epochs - 1
    history = stopped_run(backend, **{rule: threshold})
    assert history.stop_reason == rule
    assert history.epochs == stop + 1
    assert history.loss == free.loss[:stop + 1]


@pytest.mark.parametrize("rule", ["target_loss", "target_error", "min_update"])
def test_stopping_rule_that_is_never_met(rule):
    # "below 0" is never true: training runs all its epochs.
    history = stopped_run("numpy", epochs=6, **{rule: 0.0})
    assert history.epochs == 6 and history.stop_reason == "epochs"


def test_rules_combine_the_first_met_stops():
    free = free_run("numpy")
    target_loss = (free.loss[3] + free.loss[4]) / 2
    min_update = (free.largest_update[7] + free.largest_update[8]) / 2
    loss_at = first(free.loss, lambda v: v < target_loss)
    update_at = first(free.largest_update, lambda v: v < min_update)
    assert loss_at < update_at
    # target_error=0 and early stopping with a long patience never trigger here
    history = stopped_run("numpy", target_loss=target_loss, min_update=min_update,
                          target_error=0.0)
    assert (history.epochs, history.stop_reason) == (loss_at + 1, "target_loss")
    history = stopped_run("numpy", target_loss=0.0, min_update=min_update,
                          early_stopping=True, patience=50,
                          validation_data=blobs(n=20, seed=1))   # the same training set
    assert (history.epochs, history.stop_reason) == (update_at + 1, "min_update")


@pytest.mark.parametrize("rules", [dict(target_loss=-1.0), dict(target_error=float("nan")),
                                   dict(min_update=-0.1), dict(min_delta=-1.0)])
def test_invalid_rules_are_refused(rules):
    X, y = blobs()
    with pytest.raises(ValueError):
        make().fit(X, y, epochs=2, verbose=0, **rules)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # NumPy's overflow, on the way
@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_stops_and_keeps_the_last_finite_epoch(backend):
    X, y = blobs()
    net = make(sizes=(4, 6, 3), activation="identity", output="identity", loss="mse",
               backend=backend)
    recorder = Recorder()
    recorder.params.append(snapshot(net))                  # the start
    optimizer = cyprop.SGD(0.05, momentum=0.9)            # too fast: diverges in epoch 4
    with pytest.raises(cyprop.TrainingDiverged) as info:
        net.fit(X, y, epochs=50, batch_size=4, optimizer=optimizer, callbacks=[recorder],
                verbose=0)
    done = len(recorder.epochs)                            # epochs completed
    assert info.value.epoch == done and 0 < done < 50
    assert net.history.stop_reason == "diverged" and net.history.epochs == done
    np.testing.assert_array_equal(snapshot(net), recorder.params[-1])
    assert np.isfinite(optimizer.state).all() and optimizer.steps == done * 10
    assert np.isfinite(net.evaluate(X, y)["loss"])
    # (huge but finite weights: start again from small ones to see it is not locked)
    net.weights = [W * 1e-30 for W in net.weights]
    net.biases = [b * 0 for b in net.biases]
    assert net.fit(X, y, epochs=1, optimizer=cyprop.SGD(0.01), verbose=0).epochs == 1


def test_interruption_keeps_the_best_weights_and_says_so():
    class Interrupt:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 5:
                raise KeyboardInterrupt

    net, X, y, X_val, y_val = overfitting()
    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=30, batch_size=5, optimizer=cyprop.Adam(0.03),
                validation_data=(X_val, y_val), early_stopping=True, patience=20,
                callbacks=[recorder, Interrupt()], seed=1, verbose=0)
    assert net.history.stop_reason == "interrupted" and net.history.epochs == 6
    best = int(np.argmin(net.history.val_loss))
    np.testing.assert_array_equal(snapshot(net), recorder.params[best])
    assert net.fit(X, y, epochs=1, verbose=0).epochs == 1        # the lock was released


# ================================================= validation and early stopping
def overfitting(backend="numpy", dtype="float64"):
    """A wide network on few noisy samples: the validation loss soon stops improving."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] + 0.8 * rng.normal(size=30) > 0).astype(int)
    X_val = rng.normal(size=(40, 2))
    y_val = (X_val[:, 0] > 0).astype(int)
    net = make(sizes=(2, 30, 2), activation="tanh", backend=backend, dtype=dtype)
    return net, X, y, X_val, y_val


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stopping_restores_the_best_epoch(backend):
    net, X, y, X_val, y_val = overfitting(backend)
    recorder = Recorder()
    history = net.fit(X, y, epochs=60, batch_size=5, optimizer=cyprop.Adam(0.03),
                      validation_data=(X_val, y_val), early_stopping=True, patience=4,
                      callbacks=[recorder], seed=1, verbose=0)
    best = int(np.argmin(history.val_loss))
    assert history.stop_reason == "early_stopping"
    assert history.epochs == best + 4 + 1                  # patience epochs after the best
    assert best < history.epochs - 1                       # so restoring changes something
    np.testing.assert_array_equal(snapshot(net), recorder.params[best])
    assert net.evaluate(X_val, y_val)["loss"] == pytest.approx(history.val_loss[best],
                                                               rel=1e-12)


def test_min_delta_counts_small_gains_as_none():
    # No epoch beats the first by 10: the first epoch's weights come back after
    # ``patience`` more.
    net, X, y, X_val, y_val = overfitting()
    recorder = Recorder()
    history = net.fit(X, y, epochs=30, batch_size=5, optimizer=cyprop.Adam(0.03),
                      validation_data=(X_val, y_val), early_stopping=True, patience=3,
                      min_delta=10.0, callbacks=[recorder], seed=1, verbose=0)
    assert history.epochs == 4 and history.stop_reason == "early_stopping"
    np.testing.assert_array_equal(snapshot(net), recorder.params[0])


def test_patience_zero_stops_at_the_first_epoch_without_gain():
    net, X, y, X_val, y_val = overfitting()
    history = net.fit(X, y, epochs=30, batch_size=5, optimizer=cyprop.Adam(0.03),
                      validation_data=(X_val, y_val), early_stopping=True, patience=0,
                      seed=1, verbose=0)
    stop = next(e for e in range(1, 30) if history.val_loss[e] >= min(history.val_loss[:e]))
    assert history.epochs == stop + 1 and history.stop_reason == "early_stopping"


def test_early_stopping_not_triggered_still_keeps_the_best_weights():
    net, X, y, X_val, y_val = overfitting()
    recorder = Recorder()
    history = net.fit(X, y, epochs=8, batch_size=5, optimizer=cyprop.Adam(0.03),
                      validation_data=(X_val, y_val), early_stopping=True, patience=50,
                      callbacks=[recorder], seed=1, verbose=0)
    assert history.epochs == 8 and history.stop_reason == "epochs"
    best = int(np.argmin(history.val_loss))
    assert best != 7
    np.testing.assert_array_equal(snapshot(net), recorder.params[best])


def test_validation_without_early_stopping_keeps_the_last_weights():
    net, X, y, X_val, y_val = overfitting()
    recorder = Recorder()
    history = net.fit(X, y, epochs=6, batch_size=5, optimizer=cyprop.Adam(0.03),
                      validation_data=(X_val, y_val), callbacks=[recorder], seed=1, verbose=0)
    np.testing.assert_array_equal(snapshot(net), recorder.params[-1])
    for params, val_loss, val_accuracy in zip(recorder.params, history.val_loss,
                                              history.val_accuracy):
        check = make(sizes=(2, 30, 2), activation="tanh")
        restore(check, params)
        result = check.evaluate(X_val, y_val)
        assert (result["loss"], result["accuracy"]) == pytest.approx((val_loss, val_accuracy),
                                                                     rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_split_holds_out_the_last_samples(backend):
    # The last 25% (before shuffling) validate; training sees only the rest, exactly as
    # if they had been given as validation_data.
    X, y = blobs(n=40)
    split = make(backend=backend)
    h_split = split.fit(X, y, epochs=4, batch_size=6, optimizer=cyprop.SGD(0.2),
                        validation_split=0.25, seed=3, verbose=0)
    given = make(backend=backend)
    h_given = given.fit(X[:30], y[:30], epochs=4, batch_size=6, optimizer=cyprop.SGD(0.2),
                        validation_data=(X[30:], y[30:]), seed=3, verbose=0)
    np.testing.assert_array_equal(snapshot(split), snapshot(given))
    assert h_split.val_loss == h_given.val_loss and h_split.loss == h_given.loss


def test_early_stopping_alone_holds_out_ten_percent():
    X, y = blobs(n=40)
    net = make()
    history = net.fit(X, y, epochs=3, optimizer=cyprop.SGD(0.2), early_stopping=True,
                      patience=5, verbose=0)
    assert all(v is not None for v in history.val_loss)
    assert net.evaluate(X[36:], y[36:])["loss"] == pytest.approx(
        history.val_loss[int(np.argmin(history.val_loss))], rel=1e-12)



def test_early_stopping_alone_on_too_few_samples_says_what_it_held_out():
    """Its 10% of 5 samples is none: the refusal named a validation_split=0.1 that the
    call never gave."""
    X, y = blobs(n=5)
    net = make()
    with pytest.raises(ValueError, match=r"early_stopping holds out 10% .* of 5 samples "
                                         r"is none; give validation_data="):
        net.fit(X, y, epochs=2, early_stopping=True, verbose=0)
    assert net.history.epochs == 0

@pytest.mark.parametrize("kwargs", [dict(validation_split=1.0), dict(validation_split=-0.1),
                                    dict(validation_split=0.001),
                                    dict(validation_data=(np.zeros((3, 4)),)),
                                    dict(validation_data=(np.zeros((3, 5)), [0, 1, 2]))])
def test_invalid_validation_is_refused(kwargs):
    X, y = blobs()
    with pytest.raises(ValueError):
        make().fit(X, y, epochs=1, verbose=0, **kwargs)


# ======================================================================== callbacks
@pytest.mark.parametrize("backend", BACKENDS)
def test_callbacks_see_every_epoch(backend):
    X, y = blobs()
    net = make(backend=backend)
    recorder = Recorder()
    history = net.fit(X, y, epochs=4, optimizer=cyprop.SGD(0.1), callbacks=[recorder],
                      validation_split=0.2, verbose=0)
    assert recorder.epochs == [0, 1, 2, 3]
    for epoch, logs in enumerate(recorder.logs):
        assert logs["loss"] == history.loss[epoch] and logs["val_loss"] == history.val_loss[
            epoch]
        assert {"accuracy", "val_accuracy", "learning_rate", "seconds",
                "samples_per_second"} <= set(logs)


class StopAt:
    def __init__(self, epoch, how="return"):
        self.epoch, self.how, self.calls = epoch, how, 0

    def on_epoch_end(self, net, epoch, logs):
        self.calls += 1
        if epoch == self.epoch:
            if self.how == "attribute":
                net.stop_training = True
                return None
            return True
        return False


@pytest.mark.parametrize("how", ["return", "attribute"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_callback_stops_training(backend, how):
    X, y = blobs()
    net = make(backend=backend)
    other = StopAt(None)
    history = net.fit(X, y, epochs=10, callbacks=[StopAt(2, how), other], verbose=0)
    assert history.epochs == 3 and history.stop_reason == "callback"
    assert other.calls == 3                  # every callback runs in the stopping epoch
    # the flag does not carry over into the next fit
    assert net.fit(X, y, epochs=2, verbose=0).stop_reason == "epochs"


@pytest.mark.parametrize("returned", [False, None, 0, 1, "stop", np.False_])
def test_only_true_stops(returned):
    class Returns:
        def on_epoch_end(self, net, epoch, logs):
            return returned

    X, y = blobs()
    assert make().fit(X, y, epochs=3, callbacks=[Returns()], verbose=0).epochs == 3


def test_numpy_true_stops_as_true_does():
    """A callback that returns a comparison of NumPy numbers returns np.True_, which is
    not True: it was ignored, and the fit ran on."""
    class Converged:
        def on_epoch_end(self, net, epoch, logs):
            return np.float64(epoch) >= 1

    X, y = blobs()
    history = make().fit(X, y, epochs=10, callbacks=[Converged()], verbose=0)
    assert history.epochs == 2 and history.stop_reason == "callback"


def test_an_error_in_a_callback_propagates_and_leaves_the_network_usable():
    class Broken:
        def on_epoch_end(self, net, epoch, logs):
            raise KeyError("boom")

    X, y = blobs()
    net = make()
    with pytest.raises(KeyError, match="boom"):
        net.fit(X, y, epochs=3, callbacks=[Broken()], verbose=0)
    assert net.fit(X, y, epochs=1, verbose=0).epochs == 1       # the lock was released


# ========================================================================= History
@pytest.mark.parametrize("backend", BACKENDS)
def test_history_records(backend):
    X, y = blobs()
    net = make(backend=backend)
    history = net.fit(X, y, epochs=3, optimizer=cyprop.SGD(0.1), verbose=0)
    assert history is net.history and len(history) == history.epochs == 3
    records = history.to_dict()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"):
        assert isinstance(records[key], list) and len(records[key]) == 3, key
    assert records["val_loss"] == records["val_accuracy"] == [None] * 3
    assert records["learning_rate"] == [0.1] * 3
    assert all(s >= 0 for s in history.seconds) and all(r > 0 for r in
                                                        history.samples_per_second)
    assert all(u > 0 for u in history.largest_update)
    assert all(0 <= a <= 1 for a in history.accuracy)
    records["loss"].append(1.0)                  # a copy: the history is not changed
    assert history.epochs == 3
    assert "3 epochs" in repr(history) and "epochs" in repr(history)


def test_history_repr_of_an_epoch_without_a_loss():
    # record() takes every record as optional: an epoch without a loss is shown as such
    history = cyprop.History()
    history.record(accuracy=0.5)
    assert repr(history) == "<History: 1 epochs, stopped: None>"
    history.record(loss=0.25)
    assert "last loss 0.25" in repr(history)


def test_history_with_validation():
    X, y = blobs()
    history = make().fit(X, y, epochs=2, validation_data=(X[:10], y[:10]), verbose=0)
    assert all(isinstance(v, float) for v in history.val_loss + history.val_accuracy)


# ---------------------------------------------------------------------------- plot
PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_saves_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    X, y = blobs()
    history = make().fit(X, y, epochs=5, validation_split=0.2, schedule=StepDecay(2, 0.5),
                         verbose=0)
    figure = history.plot(tmp_path / "curves.png")
    assert isinstance(figure, Figure)
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)
    loss_ax, accuracy_ax, rate_ax = figure.axes
    assert [line.get_label() for line in loss_ax.get_lines()][:2] == ["training", "validation"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), history.loss)
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), history.val_loss)
    np.testing.assert_allclose(accuracy_ax.get_lines()[0].get_ydata(), history.accuracy)
    np.testing.assert_allclose(rate_ax.get_lines()[0].get_ydata(), history.learning_rate)


def test_plot_without_validation_or_path(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    X, y = blobs()
    history = make().fit(X, y, epochs=3, verbose=0)
    figure = history.plot()
    assert list(tmp_path.iterdir()) == []            # nothing written without a path
    assert [len(ax.get_lines()) for ax in figure.axes[:2]] == [1, 1]


def test_plot_of_a_history_with_gaps(tmp_path):
    # partial_fit adds epochs without validation to a fit's history: gaps, not errors.
    pytest.importorskip("matplotlib")
    X, y = blobs()
    net = make()
    net.fit(X, y, epochs=2, validation_split=0.2, verbose=0)
    net.partial_fit(X, y)
    assert net.history.val_loss[-1] is None
    net.history.plot(tmp_path / "gaps.png")
    assert (tmp_path / "gaps.png").read_bytes().startswith(PNG)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_plot_refuses_a_fifo_without_blocking(tmp_path):
    # (a .png is opened read-write, which never blocks; an .svg is opened to write)
    pytest.importorskip("matplotlib")
    assert_refuses_a_fifo_in_a_child(
        tmp_path, "curves.svg", "from cyprop.history import History; h = History(); "
        "h.record(loss=1.0, accuracy=0.5); h.plot(sys.argv[1])", "History.plot")


def test_plots_write_into_a_file_object():
    # matplotlib's savefig takes a file object; the atomic writer took paths only
    pytest.importorskip("matplotlib")
    import io

    from cyprop.explain import explain, textbook_example
    history = cyprop.History()
    history.record(loss=1.0, accuracy=0.5)
    for figure_of in (history.plot, explain(*textbook_example()).plot):
        buffer = io.BytesIO()
        figure_of(buffer)
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_plot_keeps_the_previous_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    history = cyprop.History()
    history.record(loss=1.0, accuracy=0.5)
    longer = copy.deepcopy(history)
    longer.record(loss=0.5, accuracy=0.75)
    before = assert_failed_write_keeps_the_file(monkeypatch, tmp_path / "curves.svg",
                                                history.plot, longer.plot)
    assert b"<svg" in before
    assert os.listdir(tmp_path) == ["curves.svg"]
    # matplotlib's naming is kept: no suffix, its default format's is added
    history.plot(tmp_path / "bare")
    assert (tmp_path / "bare.png").read_bytes().startswith(PNG)


def test_plot_show_uses_pyplot(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    X, y = blobs()
    figure = make().fit(X, y, epochs=2, verbose=0).plot(show=True)
    assert shown == [True]
    plt.close(figure)


def test_plot_of_an_empty_history():
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="empty"):
        cyprop.History().plot()


def test_plot_without_matplotlib(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)      # import fails
    X, y = blobs()
    history = make().fit(X, y, epochs=1, verbose=0)
    with pytest.raises(ImportError, match=r'pip install matplotlib.*pip install "cyprop\[plot\]"'):
        history.plot()


# ================================================================= progress output
def test_verbose_1_prints_a_line_per_epoch(capsys):
    X, y = blobs()
    history = make().fit(X, y, epochs=3, optimizer=cyprop.SGD(0.1), verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert line.startswith(f"epoch {epoch + 1}/3")
        assert f"loss {history.loss[epoch]:.4f}" in line
        assert f"accuracy {history.accuracy[epoch]:.2%}" in line
        assert "lr 0.1" in line and "samples/s" in line
        assert "val_loss" not in line


def test_verbose_1_with_validation_and_early_stop(capsys):
    net, X, y, X_val, y_val = overfitting()
    history = net.fit(X, y, epochs=60, batch_size=5, optimizer=cyprop.Adam(0.03),
                      validation_data=(X_val, y_val), early_stopping=True, patience=2,
                      seed=1, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == history.epochs < 60
    assert all(f"val_loss {v:.4f}" in line for v, line in zip(history.val_loss, lines))
    assert lines[0].startswith("epoch 1/60")


@pytest.mark.parametrize("verbose", [0, "auto"])      # "auto": captured output is no terminal
def test_quiet(capsys, verbose):
    X, y = blobs()
    make().fit(X, y, epochs=2, verbose=verbose)
    make().partial_fit(X, y)
    assert capsys.readouterr() == ("", "")


def test_partial_fit_can_report(capsys):
    X, y = blobs()
    make().partial_fit(X, y, verbose=1)
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("epoch 1/1")


def test_partial_fit_progress_counts_consistently(capsys):
    # partial_fit adds one epoch to net.history; its line must not read "epoch 3/1".
    X, y = blobs()
    net = make()
    net.fit(X, y, epochs=2, verbose=0)
    net.partial_fit(X, y, verbose=1)
    (line,) = capsys.readouterr().out.splitlines()
    number, total = map(int, line.split()[1].split("/"))
    assert number <= total, line


# ====================================================================== partial_fit
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_twice_equals_two_epochs(backend, shuffle):
    # Both draw their orders from the network's own generator (fit without seed=).
    X, y = blobs()
    a = make(backend=backend)
    a.fit(X, y, epochs=2, batch_size=6, optimizer=cyprop.Adam(0.01), shuffle=shuffle,
          verbose=0)
    b = make(backend=backend)
    assert b.partial_fit(X, y, batch_size=6, optimizer=cyprop.Adam(0.01),
                         shuffle=shuffle) is b
    b.partial_fit(X, y, batch_size=6, shuffle=shuffle)
    np.testing.assert_array_equal(snapshot(a), snapshot(b))
    np.testing.assert_array_equal(a.optimizer.state, b.optimizer.state)
    assert b.optimizer.steps == 14 and b.history.epochs == 2
    assert b.history.loss == a.history.loss


def test_partial_fit_default_optimizer_and_history():
    X, y = blobs()
    net = make()
    net.partial_fit(X, y)
    assert isinstance(net.optimizer, cyprop.SGD) and net.history.epochs == 1
    net.fit(X, y, epochs=2, verbose=0)
    net.partial_fit(X, y)                          # goes on with the latest fit's history
    assert net.history.epochs == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_takes_sample_and_class_weights(backend):
    X, y = blobs()
    w = np.linspace(0.5, 2.0, len(y))
    a, b = make(backend=backend), make(backend=backend)
    a.fit(X, y, epochs=1, batch_size=5, sample_weight=w, class_weight={1: 3.0},
          shuffle=False, verbose=0)
    b.partial_fit(X, y, batch_size=5, sample_weight=w, class_weight={1: 3.0}, shuffle=False)
    np.testing.assert_array_equal(snapshot(a), snapshot(b))


# ========================================================================== dropout
@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_off_at_inference(backend):
    X, y = blobs()
    plain = make(sizes=(4, 8, 6, 3), backend=backend)
    dropped = make(sizes=(4, 8, 6, 3), backend=backend, dropout=[0.5, 0.3])
    assert dropped.dropout == [0.5, 0.3]
    np.testing.assert_array_equal(plain.forward(X), dropped.forward(X))
    assert plain.evaluate(X, y) == dropped.evaluate(X, y)
    for a, b in zip(plain.forward(X, return_hidden=True), dropped.forward(X, return_hidden=True)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(plain.gradients(X, y), dropped.gradients(X, y)):
        for ga, gb in zip(a, b):
            np.testing.assert_array_equal(ga, gb)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_changes_training_reproducibly(backend):
    X, y = blobs()

    def train(dropout, seed):
        net = make(sizes=(4, 8, 3), backend=backend, dropout=dropout)
        net.fit(X, y, epochs=2, batch_size=4, seed=seed, verbose=0)
        return snapshot(net)

    np.testing.assert_array_equal(train(0.3, 1), train(0.3, 1))
    assert not np.allclose(train(0.3, 1), train(0.3, 2))
    assert not np.allclose(train(0.3, 1), train(0.0, 1))
    np.testing.assert_array_equal(train(0.0, 1), train([0.0], 1))


def test_dropout_statistics():
    # Training-time activations through the reference forward pass: about ``rate`` of
    # the hidden units are zeroed, the others scaled by 1 / (1 - rate), so the mean
    # activation is what inference sees.
    rng = np.random.default_rng(0)
    net = make(sizes=(6, 80, 50, 3), activation=["sigmoid", "tanh"])
    X = rng.normal(size=(500, 6))
    rates = [0.3, 0.0, 0.0]
    plain, _ = _reference.feedforward(net.arch, net._params, X)
    dropped, _ = _reference.feedforward(net.arch, net._params, X,
                                        dropout=Dropout([0.3, 0.0, 0.0], seed=12345))
    zeroed = dropped[1] == 0                       # sigmoid is never exactly 0 otherwise
    assert abs(zeroed.mean() - rates[0]) < 0.01    # 40000 draws: sd 0.0023
    kept = ~zeroed
    np.testing.assert_allclose(dropped[1][kept], plain[1][kept] / 0.7, rtol=1e-15)
    # the expected activation is preserved (per unit, averaged over the samples)
    np.testing.assert_allclose(dropped[1].mean(), plain[1].mean(), rtol=0.02)
    per_unit = dropped[1].mean(axis=0) / plain[1].mean(axis=0)
    assert abs(per_unit.mean() - 1) < 0.02 and per_unit.std() < 0.1
    # A layer with rate 0 and the output layer are never dropped.
    assert np.all(dropped[3] > 0)
    assert not np.any(np.isclose(dropped[2], 0) & ~np.isclose(plain[2], 0, atol=1e-12))


def test_dropout_masks_depend_on_seed_and_position_only():
    net = make(sizes=(4, 30, 3))
    masks = Dropout([0.5, 0.0], seed=7)
    whole = masks.mask(net.arch, 0, 0, 10)
    assert whole.shape == (10, 30)
    np.testing.assert_array_equal(masks.mask(net.arch, 0, 4, 3), whole[4:7])   # any batching
    assert not np.array_equal(whole[0], whole[1])                             # per sample
    assert not np.array_equal(Dropout([0.5, 0.0], seed=8).mask(net.arch, 0, 0, 10), whole)
    assert masks.mask(net.arch, 1, 0, 10).all()                               # rate 0


def test_dropout_gradient_matches_finite_differences():
    # With the masks fixed (a seed), the loss is a smooth function of the weights and
    # backprop must give its gradient: checks the inverted-dropout derivative.
    net = make(sizes=(3, 7, 6, 2), activation=["tanh", "sigmoid"])
    X, y = blobs(n=9, n_features=3, n_classes=2)
    Y = np.eye(2)[y]
    dropout = Dropout([0.4, 0.25, 0.0], seed=99)
    params = net._params.copy()

    def loss(p):
        return _reference.loss_and_gradients(net.arch, p, X, Y, False, None, dropout)[0]

    grad = _reference.loss_and_gradients(net.arch, params, X, Y, True, None, dropout)[2]
    numeric = np.empty_like(params)
    for i in range(params.size):
        up, down = params.copy(), params.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric[i] = (loss(up) - loss(down)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    plain = _reference.loss_and_gradients(net.arch, params, X, Y, True)[2]
    assert not np.allclose(grad, plain)            # the masks were in effect


@pytest.mark.parametrize("dropout", [1.0, -0.1, [0.2], [0.1, 0.2, 0.3], "0.5", True])
def test_invalid_dropout_is_refused(dropout):
    with pytest.raises((ValueError, TypeError)):
        cyprop.Network([4, 5, 6, 3], dropout=dropout)


# ========================================================================= max-norm
def row_norms(net):
    return [np.linalg.norm(W.astype(np.float64), axis=1) for W in net.weights]


@pytest.mark.parametrize("batch_size", [1, 10])       # 1: the compiled core's fused SGD path
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_max_norm_bounds_every_row(backend, dtype, batch_size):
    X, y = blobs()
    free = make(sizes=(4, 8, 3), backend=backend, dtype=dtype)
    free.fit(X, y, epochs=3, batch_size=batch_size, optimizer=cyprop.SGD(0.5), seed=0,
             verbose=0)
    assert max(n.max() for n in row_norms(free)) > 1.2    # the bound below does bind
    bound = make(sizes=(4, 8, 3), backend=backend, dtype=dtype, max_norm=1.2)
    bound.fit(X, y, epochs=3, batch_size=batch_size, optimizer=cyprop.SGD(0.5), seed=0,
              verbose=0)
    for norms in row_norms(bound):
        assert norms.max() <= 1.2 * (1 + 10 * np.finfo(dtype).eps)
    assert any(np.isclose(n, 1.2, rtol=1e-5).any() for n in row_norms(bound))


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_norm_step_by_hand(backend):
    # One full-batch step: the SGD step, then rows longer than the bound scaled onto it.
    X, y = blobs()
    net = make(sizes=(4, 8, 3), backend=backend, max_norm=0.9)
    grads_w, grads_b = net.gradients(X, y)
    expected = []
    for W, gW in zip(net.weights, grads_w):
        W = W - 0.5 * gW
        norms = np.linalg.norm(W, axis=1)
        expected.append(np.where(norms[:, None] > 0.9, W * (0.9 / norms)[:, None], W))
    biases = [b - 0.5 * gb for b, gb in zip(net.biases, grads_b)]
    net.fit(X, y, epochs=1, batch_size=len(y), optimizer=cyprop.SGD(0.5), verbose=0)
    for got, want in zip(list(net.weights) + list(net.biases), expected + biases):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_a_loose_max_norm_changes_nothing():
    X, y = blobs()
    a, b = make(max_norm=1e6), make()
    for net in (a, b):
        net.fit(X, y, epochs=2, batch_size=4, seed=0, verbose=0)
    np.testing.assert_array_equal(snapshot(a), snapshot(b))


@pytest.mark.parametrize("max_norm, error", [(0, ValueError), (-1.0, ValueError),
                                             (float("inf"), ValueError), ("1", TypeError),
                                             (True, TypeError)])
def test_invalid_max_norm_is_refused(max_norm, error):
    with pytest.raises(error):
        cyprop.Network([4, 5, 3], max_norm=max_norm)


# =================================================================== sample weights
@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_weights_equal_duplicated_samples(backend):
    # Full batch: a weighted step is lr * sum(w_i g_i) / n, a step on the duplicated set
    # lr' * sum(w_i g_i) / sum(w).  So SGD(lr') on the duplicated set equals
    # SGD(lr' * n / sum(w)) on the weighted one, and the logged mean losses differ by the
    # factor sum(w) / n.  Zero weights drop a sample.
    X, y = blobs(n=20)
    w = np.array([2, 0, 1, 3, 1, 1, 0, 2, 1, 1, 4, 1, 1, 2, 1, 1, 0, 1, 3, 1])
    weighted, duplicated = make(backend=backend), make(backend=backend)
    h_w = weighted.fit(X, y, epochs=3, batch_size=20, optimizer=cyprop.SGD(0.3 * 20 / w.sum()),
                       sample_weight=w, shuffle=False, verbose=0)
    h_d = duplicated.fit(np.repeat(X, w, axis=0), np.repeat(y, w), epochs=3,
                         batch_size=int(w.sum()), optimizer=cyprop.SGD(0.3), shuffle=False,
                         verbose=0)
    np.testing.assert_allclose(snapshot(weighted), snapshot(duplicated), rtol=1e-10,
                               atol=1e-13)
    np.testing.assert_allclose(np.array(h_w.loss) * 20 / w.sum(), h_d.loss, rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_mini_batches_by_hand(backend):
    # Each batch's step: lr * mean over its samples of w_i * (gradient of sample i).
    X, y = blobs(n=11)
    w = np.linspace(0.2, 3.0, 11)
    net = make(backend=backend)
    oracle = make(backend="numpy")
    for batch in (range(0, 4), range(4, 8), range(8, 11)):
        grads = [oracle.gradients(X[i:i + 1], y[i:i + 1]) for i in batch]
        for part in (0, 1):
            target = oracle.weights if part == 0 else oracle.biases
            for l in range(2):
                target[l] = target[l] - 0.4 * np.mean(
                    [w[i] * g[part][l] for i, g in zip(batch, grads)], axis=0)
    net.fit(X, y, epochs=1, batch_size=4, optimizer=cyprop.SGD(0.4), sample_weight=w,
            shuffle=False, verbose=0)
    np.testing.assert_allclose(snapshot(net), snapshot(oracle), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_move_with_their_samples_when_shuffled(backend, batch_size):
    # fit(seed=s) visits the samples in default_rng(s).permutation(n): training on the
    # data put in that order beforehand, without shuffling, must be the same.
    X, y = blobs(n=20)
    w = np.random.default_rng(5).uniform(0.1, 3.0, 20)
    order = np.random.default_rng(7).permutation(20)
    a, b = make(backend=backend), make(backend=backend)
    a.fit(X, y, epochs=1, batch_size=batch_size, sample_weight=w, seed=7, verbose=0)
    b.fit(X[order], y[order], epochs=1, batch_size=batch_size, sample_weight=w[order],
          shuffle=False, verbose=0)
    np.testing.assert_allclose(snapshot(a), snapshot(b), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unit_weights_change_nothing(backend):
    X, y = blobs()
    a, b = make(backend=backend), make(backend=backend)
    a.fit(X, y, epochs=2, batch_size=3, seed=1, verbose=0)
    b.fit(X, y, epochs=2, batch_size=3, seed=1, sample_weight=np.ones(len(y)),
          class_weight={0: 1, 1: 1.0}, verbose=0)
    np.testing.assert_array_equal(snapshot(a), snapshot(b))


def balanced(labels, n_classes):
    """scikit-learn's 'balanced': n / (k * count), k the number of classes present."""
    counts = np.bincount(labels, minlength=n_classes)
    present = counts > 0
    table = np.zeros(n_classes)
    table[present] = len(labels) / (present.sum() * counts[present])
    return table


@pytest.mark.parametrize("labels", [
    np.array([0] * 12 + [1] * 5 + [2] * 3),           # imbalanced
    np.array([0] * 14 + [2] * 6),                      # a class absent: k = 2
], ids=["imbalanced", "absent-class"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_balanced_class_weight(backend, labels):
    X, _ = blobs(n=20)
    table = balanced(labels, 3)
    try:
        from sklearn.utils.class_weight import compute_class_weight
    except ImportError:
        pass
    else:                                  # the formula above is scikit-learn's
        present = np.unique(labels)
        np.testing.assert_allclose(table[present], compute_class_weight(
            "balanced", classes=present, y=labels))
    a, b = make(backend=backend), make(backend=backend)
    a.fit(X, labels, epochs=2, batch_size=6, class_weight="balanced", seed=2, verbose=0)
    b.fit(X, labels, epochs=2, batch_size=6, sample_weight=table[labels], seed=2, verbose=0)
    np.testing.assert_allclose(snapshot(a), snapshot(b), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_weight_dict_and_sample_weight_multiply(backend):
    X, y = blobs(n=20)
    w = np.random.default_rng(1).uniform(0.5, 2.0, 20)
    table = np.array([3.0, 1.0, 0.5])                   # class 1 not named: weight 1
    a, b = make(backend=backend), make(backend=backend)
    a.fit(X, y, epochs=2, batch_size=6, class_weight={0: 3.0, 2: 0.5}, sample_weight=w,
          seed=2, verbose=0)
    b.fit(X, y, epochs=2, batch_size=6, sample_weight=w * table[y], seed=2, verbose=0)
    np.testing.assert_allclose(snapshot(a), snapshot(b), rtol=1e-14, atol=1e-15)


def test_class_weight_with_one_sigmoid_output():
    # One output: the class is the target thresholded at 0.5.
    X, _ = blobs(n=20)
    targets = np.array([0.0] * 15 + [1.0] * 5)
    a, b = make(sizes=(4, 5, 1)), make(sizes=(4, 5, 1))
    a.fit(X, targets, epochs=2, batch_size=4, class_weight="balanced", seed=0, verbose=0)
    b.fit(X, targets, epochs=2, batch_size=4, sample_weight=np.where(targets > 0.5, 2.0,
                                                                     20 / 30), seed=0,
          verbose=0)
    np.testing.assert_allclose(snapshot(a), snapshot(b), rtol=1e-14, atol=1e-15)


def test_weights_follow_the_validation_split():
    X, y = blobs(n=40)
    w = np.linspace(0.5, 1.5, 40)
    a, b = make(), make()
    a.fit(X, y, epochs=2, sample_weight=w, validation_split=0.25, seed=0, verbose=0)
    b.fit(X[:30], y[:30], epochs=2, sample_weight=w[:30], seed=0, verbose=0)
    np.testing.assert_array_equal(snapshot(a), snapshot(b))


@pytest.mark.parametrize("n_weights", [30, 39, 10])
def test_weights_of_the_wrong_length_are_refused_with_a_validation_split(n_weights):
    """sample_weight is one weight per sample of X: with samples held out, one as long
    as the training part (30) was taken, the weights of other samples, and other
    lengths were refused as if (30,) had been asked for."""
    X, y = blobs(n=40)
    net = make()
    with pytest.raises(ValueError, match=rf"sample_weight must have shape \(40,\), "
                                         rf"got \({n_weights},\)"):
        net.fit(X, y, epochs=1, sample_weight=np.ones(n_weights), validation_split=0.25,
                verbose=0)
    assert net.history.epochs == 0


@pytest.mark.parametrize("kwargs, error", [
    (dict(sample_weight=-np.ones(40)), ValueError),
    (dict(sample_weight=np.ones(39)), ValueError),
    (dict(sample_weight=np.full(40, np.nan)), ValueError),
    (dict(sample_weight=np.zeros(40)), ValueError),
    (dict(sample_weight=["a"] * 40), TypeError),
    (dict(class_weight="auto"), ValueError),
    (dict(class_weight={3: 1.0}), ValueError),
    (dict(class_weight={0: -1.0}), ValueError),
    (dict(class_weight={0: 0, 1: 0, 2: 0}), ValueError),
])
def test_invalid_weights_are_refused(kwargs, error):
    X, y = blobs()
    with pytest.raises(error):
        make().fit(X, y, epochs=1, verbose=0, **kwargs)


# ======================================================== activations, return_hidden
ACTIVATE = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z,
            "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_per_layer_activations_and_return_hidden(backend, dtype):
    net = make(sizes=(4, 5, 6, 7, 3), activation=["relu", "tanh", "leaky_relu"],
               backend=backend, dtype=dtype)
    assert net.activations == ["relu", "tanh", "leaky_relu", "softmax"]
    X, _ = blobs(n=9)
    a, expected = X, []
    for W, b, act in zip(net.weights, net.biases, net.activations):
        z = a @ W.astype(np.float64).T + b
        a = ACTIVATE[act](z) if act != "softmax" else np.exp(z) / np.exp(z).sum(1, keepdims=True)
        expected.append(a)
    layers = net.forward(X, return_hidden=True)
    assert isinstance(layers, list) and [l.shape for l in layers] == [(9, 5), (9, 6), (9, 7),
                                                                      (9, 3)]
    assert all(l.dtype == np.dtype(dtype) for l in layers)
    for got, want in zip(layers, expected):
        assert_close(got, want, dtype)
    np.testing.assert_array_equal(layers[-1], net.forward(X))
    single = net.forward(X[2], return_hidden=True)
    assert [l.shape for l in single] == [(5,), (6,), (7,), (3,)]
    for got, whole in zip(single, layers):
        assert_close(got, whole[2], dtype)


def test_wrong_number_of_activations():
    with pytest.raises(ValueError, match="hidden layers"):
        cyprop.Network([4, 5, 6, 3], activation=["relu"])


# ========================================================== long epochs run in parts
@pytest.mark.parametrize("backend", BACKENDS)
def test_epochs_split_into_parts_give_the_same_result(backend, monkeypatch):
    # Long epochs run in parts of whole batches (for progress and Ctrl-C); dropout
    # masks, sample weights and optimizer steps must carry across the parts.
    X, y = blobs(n=40)
    w = np.linspace(0.5, 2.0, 40)

    def train():
        net = make(sizes=(4, 9, 3), backend=backend, dropout=0.3, max_norm=2.0)
        history = net.fit(X, y, epochs=2, batch_size=3, optimizer=cyprop.Adam(0.02),
                          sample_weight=w, seed=4, verbose=0)
        return snapshot(net), history.loss, net.optimizer.steps

    whole = train()
    monkeypatch.setattr(_loop, "parts",
                        lambda n, batch_size, n_params: [(s, min(s + 2 * batch_size, n))
                                                         for s in range(0, n, 2 * batch_size)])
    parts = train()
    np.testing.assert_array_equal(whole[0], parts[0])
    assert whole[1] == pytest.approx(parts[1], rel=1e-13) and whole[2] == parts[2] == 28


def test_long_epochs_run_in_parts_of_whole_batches():
    """Parts of about PART_PRODUCTS weight-sample products, of whole batches, covering
    the epoch in order; a short epoch is one part."""
    W3 = 784 * 100 + 100 + 100 * 10 + 10
    assert _loop.parts(10_000, 128, W3) == [(0, 10_000)]   # 8e8 products
    for n, batch_size in ((60_000, 128), (60_000, 1), (10**7, 7)):
        ranges = _loop.parts(n, batch_size, W3)
        assert len(ranges) == n * W3 // _loop.PART_PRODUCTS
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(stop == next_start for (_, stop), (next_start, _) in zip(ranges, ranges[1:]))
        assert all(start % batch_size == 0 for start, _ in ranges)


# ===================================================================== backend parity
# Each feature on its own, on both backends: same seed, same weights and records.
FEATURES = {
    "step-schedule": (dict(), dict(schedule=StepDecay(2, 0.5))),
    "plateau-schedule": (dict(), dict(schedule=ReduceOnPlateau(0.5, patience=0,
                                                               min_delta=0.05))),
    "dropout": (dict(dropout=[0.3, 0.1]), dict()),
    "max-norm": (dict(max_norm=0.8), dict()),
    # A gentler rate: at 0.1 with momentum this float32 run is chaotic enough that FMA
    # rounding (AVX2 kernels) alone grows to ~1e-4 relative in 4 epochs.
    "dropout-max-norm-decay": (dict(dropout=0.2, max_norm=1.0),
                               dict(optimizer=cyprop.SGD(0.05, momentum=0.5,
                                                         weight_decay=0.01))),
    "sample-weight": (dict(), dict(sample_weight=np.linspace(0.1, 2.0, 40))),
    "class-weight": (dict(), dict(class_weight="balanced")),
    "early-stopping": (dict(), dict(validation_split=0.25, early_stopping=True, patience=1)),
    "per-layer-activations": (dict(activation=["relu", "sigmoid"]), dict()),
    "adam-dropout": (dict(dropout=0.25), dict(optimizer=cyprop.Adam(0.01))),
    "rmsprop": (dict(), dict(optimizer=cyprop.RMSprop(0.005, momentum=0.5))),
    "adagrad": (dict(), dict(optimizer=cyprop.Adagrad(0.05, weight_decay=0.01))),
    "rprop": (dict(), dict(optimizer=cyprop.Rprop(0.01))),
}


@pytest.mark.parametrize("batch_size", [1, 3, 10, 32])   # 32: the threaded mini-batch path
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("feature", FEATURES)
def test_backend_parity(feature, dtype, batch_size):
    import copy

    net_kwargs, fit_kwargs = FEATURES[feature]
    X, y = blobs(n=40, spread=1.5)
    y = np.where(np.arange(40) < 8, 0, y)             # imbalanced, for class weights
    results = {}
    for backend in BACKENDS:
        net = make(sizes=(4, 7, 5, 3), activation=net_kwargs.get("activation", "tanh"),
                   backend=backend, dtype=dtype,
                   **{k: v for k, v in net_kwargs.items() if k != "activation"})
        kwargs = copy.deepcopy(fit_kwargs)               # fresh optimizer and schedule
        kwargs.setdefault("optimizer", cyprop.SGD(0.1))
        history = net.fit(X, y, epochs=4, batch_size=batch_size, seed=3, verbose=0, **kwargs)
        results[backend] = snapshot(net), history
    (p_c, h_c), (p_n, h_n) = results["cython"], results["numpy"]
    assert_close(p_c, p_n, dtype, "parameters")
    assert (h_c.epochs, h_c.stop_reason) == (h_n.epochs, h_n.stop_reason)
    assert_close(h_c.loss, h_n.loss, dtype, "loss")
    assert_close(h_c.learning_rate, h_n.learning_rate, dtype, "learning rate")
    if h_c.val_loss[0] is not None:
        assert_close(h_c.val_loss, h_n.val_loss, dtype, "val_loss")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [64, 160])
@pytest.mark.parametrize("fit_kwargs", [
    dict(optimizer=cyprop.SGD(0.05)),
    dict(optimizer=cyprop.Adam(1e-3), sample_weight="linspace"),
], ids=["sgd", "adam-weighted"])
def test_parallel_batches_same_result_for_any_thread_count(dtype, batch_size, fit_kwargs):
    """Layers big enough for the compiled core to split their units into parts on
    parallel threads (forward, gradients and the deltas of the layer below, in both
    hidden layers of [256, 192, 192, 10]; batches of one block, in which plain SGD steps
    W_0 in the gradient product's parts, and of two): the trained weights are
    bit-identical for 1, 2 and 3 threads, and agree with the NumPy reference."""
    X, y = blobs(n=200, n_features=256, n_classes=10, spread=2.0)
    results = {}
    for backend, n_threads in (("cython", 1), ("cython", 2), ("cython", 3), ("numpy", None)):
        kwargs = dict(fit_kwargs, optimizer=fit_kwargs["optimizer"].__class__(
            fit_kwargs["optimizer"].learning_rate))
        if kwargs.get("sample_weight") == "linspace":
            kwargs["sample_weight"] = np.linspace(0.5, 1.5, len(X))
        net = make(sizes=(256, 192, 192, 10), backend=backend, dtype=dtype, dropout=0.1)
        net.fit(X, y, epochs=2, batch_size=batch_size, seed=1, verbose=0,
                n_threads=n_threads, **kwargs)
        results[backend, n_threads] = snapshot(net)
    one = results["cython", 1]
    np.testing.assert_array_equal(results["cython", 2], one)
    np.testing.assert_array_equal(results["cython", 3], one)
    assert_close(one, results["numpy", None], dtype, "parameters")
