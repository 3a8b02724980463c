"""The per-worker training loop run by Ray Train's ``TensorflowTrainer``.

Each worker holds its shard of the training split and the whole validation split in
memory (FER-2013 is 66 MB), draws a class-balanced, augmented sample each epoch, and trains
under ``MultiWorkerMirroredStrategy``: one ``fit`` per phase (see :func:`phases`), with each
epoch validated and reported with a checkpoint as it ends. A restarted worker group resumes
from the latest checkpoint, so finished epochs are never redone.

A checkpoint directory holds ``model.keras`` (with optimizer state) and ``state.json``
(epochs done, training seconds, metric history, the latest validation scores).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer import console
from fer._ray import quiet_ray_data
from fer.data.augment import augment, mixup
from fer.data.balance import class_weights, epoch_counts, sample_epoch
from fer.data.fer2013 import targets_of, to_columns
from fer.labels import FACE_SIZE, NUM_CLASSES
from fer.metrics import score
from fer.train import models, precision
from fer.train.config import TrainConfig

CHECKPOINT_MODEL = "model.keras"
CHECKPOINT_STATE = "state.json"
#: Fault injection for tests: "EPOCH:MARKER" makes the last worker crash at the start of
#: epoch EPOCH (1-based) unless MARKER exists, and creates MARKER, so it crashes once.
CHAOS_ENV = "FER_CHAOS_CRASH_AT_EPOCH"
PROGRESS_EVERY_S = 30.0


def epoch_size(config: TrainConfig, train_counts: list[int]) -> int:
    """Samples one epoch draws over all workers, rounded up to whole global batches."""
    if config.balance == "augment":
        total = int(epoch_counts(train_counts, config.balance_target).sum())
    else:
        total = int(sum(train_counts))
    return max(1, math.ceil(total / config.batch_size)) * config.batch_size


#: Where the cosine schedule ends, as a share of its peak: not 0, so the last epochs still
#: learn and a warm restart (``--init``) from the final weights continues from a live optimum.
LR_FLOOR = 0.02


def learning_rate(config: TrainConfig, epoch: int, transfer: bool) -> float:
    """Cosine decay over the epochs of the current phase (epoch is 0-based).

    Transfer models train the head at ``lr`` for ``freeze_epochs``, then decay from
    ``fine_tune_lr`` over the rest.
    """
    if transfer and config.init is None and config.freeze_epochs > 0:
        if epoch < config.freeze_epochs:
            return config.lr
        base, start, end = config.fine_tune_lr, config.freeze_epochs, config.epochs
    else:
        base, start, end = config.lr, 0, config.epochs
    t = (epoch - start) / max(1, end - start)
    return float(base * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))))


def _collect(shard) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A worker's faces, labels, targets (see :func:`fer.data.fer2013.targets_of`) and loss
    weights (None where every face weighs the same: no ``--extra``)."""
    columns = to_columns(shard)
    if not len(columns["label"]):
        raise RuntimeError("a training worker received no data")
    return columns["image"], columns["label"], targets_of(columns), columns.get("weight")


def _chaos(epoch: int, rank: int, world: int) -> None:
    spec = os.environ.get(CHAOS_ENV)
    if not spec or rank != world - 1:
        return
    at, marker = spec.split(":", 1)
    if epoch + 1 == int(at) and not Path(marker).exists():
        Path(marker).write_text(f"crashed at epoch {epoch + 1}\n")
        os._exit(1)


def _say(message: str) -> None:
    # Ray Train routes print() through its logger, which shows each line twice on the
    # driver; plain writes to stdout are forwarded once.
    sys.stdout.write(f"[fer] {message}\n")
    sys.stdout.flush()


def _compile(model, config: TrainConfig, lr: float) -> None:
    from fer._tf import keras

    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


def _new_model(config: TrainConfig, arithmetic: str):
    """The model a run starts from, computing in ``arithmetic`` (a resolved precision)."""
    from fer import bundle

    if config.init:
        model = bundle.load(config.init, runtime="keras").keras_model
        return model if precision.computes_in(model, arithmetic) else precision.cast(model, arithmetic)
    model = models.build(config.arch, weights=config.weights, input_size=config.input_size)
    if models.is_transfer(config.arch) and config.freeze_epochs > 0:
        models.set_backbone_trainable(model, config.arch, 0)
    return model


def _starting_point(config: TrainConfig, checkpoint, run_dir: Path, arithmetic: str) -> tuple[dict, object]:
    """The training state and compiled model a worker starts from (in the strategy's scope):
    the newest checkpoint's (see :func:`_restore`), computing in ``arithmetic``, or a new run's."""
    restored = _restore(checkpoint, run_dir)
    if restored:
        state, model = restored
        state["resumed_at_epoch"] = state["epochs_done"] + 1
        return state, _recast(model, config, arithmetic)
    model = _new_model(config, arithmetic)
    _compile(model, config, learning_rate(config, 0, _transfer(config)))
    return {"epochs_done": 0, "train_seconds": 0.0, "history": []}, model


def _recast(model, config: TrainConfig, arithmetic: str):
    """A restored (compiled) ``model`` computing in ``arithmetic``, its optimizer state carried
    over: a run may resume in another precision than it was checkpointed in."""
    if precision.computes_in(model, arithmetic):
        return model
    cast = precision.cast(model, arithmetic)
    _compile(cast, config, float(model.optimizer.learning_rate.numpy()))
    cast.optimizer.build(cast.trainable_variables)
    for new, old in zip(cast.optimizer.variables, model.optimizer.variables, strict=True):
        new.assign(old)
    return cast


def train_loop_per_worker(plan: dict) -> None:
    """Ray Train entry point. ``plan`` holds ``config`` (a :class:`TrainConfig` dict),
    ``train_counts`` (images per class over all workers), ``epoch_size`` and ``run_dir``
    (the run's storage directory, which every worker must see)."""
    worker = _Worker.start(plan)
    for first, end in phases(worker.config, worker.state["epochs_done"]):
        worker.train_phase(first, end)


def phases(config: TrainConfig, done: int) -> list[tuple[int, int]]:
    """The (first, end) epochs (0-based, end exclusive) of the run's phases still to train:
    one for most runs; a frozen and a fine-tuned one for transfer models. Each phase is one
    ``fit`` with one input iterator (see :func:`_epoch_batches`)."""
    bounds = [0, config.epochs]
    if _transfer(config) and 0 < config.freeze_epochs < config.epochs:
        bounds.insert(1, config.freeze_epochs)
    return [(max(a, done), b) for a, b in itertools.pairwise(bounds) if b > done]


@dataclass
class _Worker:
    """One training worker's state, explicit: its data, models and where the run stands."""

    config: TrainConfig
    plan: dict
    strategy: object
    model: object
    #: A plain float32 copy for validation: it runs locally on each worker with no
    #: collectives, and scores what the bundle will.
    eval_model: object
    #: The resolved ``--precision`` the model trains in.
    arithmetic: str
    #: Faces, labels (what balancing counts), targets (one-hot labels, or FER+'s votes) and
    #: loss weights (None unless ``--extra``).
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]
    val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]
    #: The bundle distilled (``--teacher``; None without), loaded once.
    teacher: object | None
    state: dict
    rank: int
    world: int

    @classmethod
    def start(cls, plan: dict) -> _Worker:
        """Set TensorFlow up, read this worker's data and restore (or build) the model."""
        import ray.train

        from fer._tf import tf

        config = TrainConfig.from_dict(plan["config"])
        quiet_ray_data()
        tf.get_logger().setLevel("ERROR")
        ctx = ray.train.get_context()
        cpus = config.resolved_cpus()
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        train = _collect(ray.train.get_dataset_shard("train"))
        val = _collect(ray.train.get_dataset_shard("val"))
        arithmetic = precision.resolve(config.precision, config.gpus_per_worker)
        precision.use(arithmetic)
        with strategy.scope():
            state, model = _starting_point(config, ray.train.get_checkpoint(), Path(plan["run_dir"]), arithmetic)
        eval_model = precision.cast(model, "float32")
        worker = cls(config, plan, strategy, model, eval_model, arithmetic, train, val, _load_teacher(config), state,
                     ctx.get_world_rank(), ctx.get_world_size())  # fmt: skip
        if worker.rank == 0:
            _say(
                f"{worker.world} worker(s), {len(train[0])} train faces on this worker, {worker.local_size} "
                f"samples/epoch/worker in {worker.steps} steps, {arithmetic}, starting at epoch "
                f"{state['epochs_done'] + 1}/{config.epochs}"
            )
        return worker

    @property
    def steps(self) -> int:
        return self.plan["epoch_size"] // self.config.batch_size

    @property
    def local_size(self) -> int:
        return self.steps * self.config.per_worker_batch

    def train_phase(self, first: int, end: int) -> None:
        """Train epochs ``first`` to ``end`` - 1 (0-based) in one ``fit``; each epoch is
        validated, reported and checkpointed as it ends (:func:`_epoch_callback`)."""
        config = self.config
        if _transfer(config) and first == config.freeze_epochs > 0:
            with self.strategy.scope():
                models.set_backbone_trainable(self.model, config.arch, config.fine_tune_blocks)
                _compile(self.model, config, config.fine_tune_lr)
        seen: dict[int, list[int]] = {}
        dataset_fn = _epoch_batches(config, range(first, end), lambda epoch: self.sample(epoch, seen), self.steps)
        self.model.fit(
            self.strategy.distribute_datasets_from_function(dataset_fn),
            epochs=end, initial_epoch=first, steps_per_epoch=self.steps, verbose=0,
            callbacks=[_epoch_callback(self, seen)],
        )  # fmt: skip

    def sample(self, epoch: int, seen: dict[int, list[int]]):
        """Epoch ``epoch``'s faces, targets and weights (see :func:`_epoch_sample`); the classes
        drawn go to ``seen[epoch]``."""
        per_class = epoch_counts(self.plan["train_counts"], self.config.balance_target)
        xb, targets, weights, seen[epoch] = _epoch_sample(self.config, *self.train, self.teacher, per_class,
                                                          self.local_size, epoch, self.rank)  # fmt: skip
        return xb, targets, weights

    def validate(self):
        """Scores of the current weights on the validation split (run locally on each worker)."""
        self.eval_model.set_weights(self.model.get_weights())
        xv, yv, *_ = self.val
        return score(yv, self.eval_model.predict(xv[..., None].astype(np.float32), batch_size=256, verbose=0))

    def record(self, epoch: int, logs: dict, val, lr: float, train_s: float, epoch_s: float, seen: list[int]):
        """Add epoch ``epoch``'s figures to the state, say them, and report them with a checkpoint."""
        state, config = self.state, self.config
        state["train_seconds"] += epoch_s
        state["epochs_done"] = epoch + 1
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(logs["loss"]),
            "train_accuracy": float(logs["accuracy"]),
            "val_accuracy": val.accuracy,
            "val_macro_f1": val.macro_f1,
            "lr": lr,
            "images_per_s": self.steps * config.batch_size / train_s,
            "precision": self.arithmetic,
            "seen_per_class_worker0": seen,
        }
        state["history"].append(metrics)
        state["validation"] = val.to_dict()
        state["train_counts"] = self.plan["train_counts"]
        if self.rank == 0:
            _say(
                f"epoch {epoch + 1}/{config.epochs}  loss {metrics['train_loss']:.4f}  "
                f"acc {metrics['train_accuracy']:.4f}  val_acc {val.accuracy:.4f}  "
                f"val_f1 {val.macro_f1:.4f}  lr {lr:.2e}  {metrics['images_per_s']:.0f} img/s  "
                f"seen/class (worker 0) {seen}"
            )
        _report(self.model, state, metrics, self.rank)


def _transfer(config: TrainConfig) -> bool:
    """Whether the run trains a pretrained backbone in phases (frozen, then fine-tuned)."""
    return models.is_transfer(config.arch) and config.init is None


def _load_teacher(config: TrainConfig):
    """The ``--teacher`` bundle (None without one), on LiteRT when it has it: its passes then
    leave TensorFlow's session alone and cost a fraction of a training step."""
    if config.teacher is None:
        return None
    from fer import bundle

    teacher = bundle.load(config.teacher, threads=config.resolved_cpus())
    _say(f"teacher {teacher.name} ({teacher.id}) labels every augmented face of each epoch")
    return teacher


def _epoch_sample(config: TrainConfig, x, y, t, w, teacher, per_class, size: int, epoch: int, rank: int):
    """One epoch's ``size`` faces (balanced by label ``y``, augmented and blended as
    configured), their targets (the face's target ``t``, a one-hot label or a vote distribution,
    blended with the partner's under mixup, mixed with the teacher's
    probabilities for the face as the student sees it), their weights (the faces' weights ``w``
    times the class weight under ``class-weight``, blended like the targets under mixup; None
    without either) and how many of each class were drawn.

    The teacher labels each augmented view rather than the face as it is: "consistent
    teaching" (Beyer et al. 2022), which is what lets a student match its teacher."""
    rng = np.random.default_rng([config.seed, epoch, rank])
    if config.balance == "augment":
        idx = sample_epoch(y, per_class, size, rng)
    else:
        idx = rng.choice(len(y), size, replace=size > len(y))
    xb = augment(x[idx], rng, config.augment) if config.use_augment else x[idx]
    targets = t[idx]
    weights = None if w is None else w[idx].astype(np.float32)
    if config.balance == "class-weight":  # each class's weight from its faces' total weight
        by_class = class_weights(np.bincount(y, weights=w, minlength=NUM_CLASSES))[y[idx]].astype(np.float32)
        weights = by_class if weights is None else weights * by_class
    if config.use_augment and config.augment.mixup:
        xb, partners, shares = mixup(xb, rng, config.augment.mixup)
        targets = shares[:, None] * targets + (1 - shares[:, None]) * targets[partners]
        if weights is not None:  # a blend weighs what its two faces weigh, shared as they are
            weights = (shares * weights + (1 - shares) * weights[partners]).astype(np.float32)
    if teacher is not None:
        taught = soften(teacher.predict(xb), config.teacher_temperature)
        targets = (1 - config.teacher_weight) * targets + config.teacher_weight * taught
    return xb, targets, weights, np.bincount(y[idx], minlength=NUM_CLASSES).tolist()


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at a distillation temperature: raised to ``1 / temperature`` and
    renormalised (Hinton et al. 2015's softmax at T, from probabilities); 1 leaves them."""
    if temperature == 1.0:
        return probs
    powered = np.power(np.clip(probs, 1e-12, None), 1.0 / temperature)
    return (powered / powered.sum(axis=1, keepdims=True)).astype(probs.dtype)


def _epoch_batches(config: TrainConfig, epochs: range, sample, steps: int):
    """The ``dataset_fn`` (for ``distribute_datasets_from_function``) of a phase: ``steps``
    batches of ``sample(epoch)`` (faces, targets, weights or None) for each epoch in turn.

    One dataset, hence one iterator, for all the phase's epochs: freeing an iterator waits
    for tf.data's autotuning threads to wake from their sleep (up to 60 s), which stalled
    the end of most epochs when each had its own (seen with gdb: ``~IteratorResource``
    waiting on ``Model::OptimizeLoop``). Autotuning is off too: the pipeline has nothing to tune.
    """
    from fer._tf import tf

    weighted = config.balance == "class-weight" or config.extra is not None

    def dataset_fn(input_context):
        size = input_context.get_per_replica_batch_size(config.batch_size)

        def batches():
            for epoch in epochs:
                xb, targets, weights = sample(epoch)
                for i in range(0, steps * size, size):
                    yield (xb[i : i + size], targets[i : i + size]) + ((weights[i : i + size],) if weighted else ())

        spec = [tf.TensorSpec((size, FACE_SIZE, FACE_SIZE), tf.uint8), tf.TensorSpec((size, NUM_CLASSES), tf.float32)]
        spec += [tf.TensorSpec((size,), tf.float32)] if weighted else []
        ds = tf.data.Dataset.from_generator(batches, output_signature=tuple(spec))
        ds = ds.map(lambda img, *rest: (tf.cast(img, tf.float32)[..., None], *rest))
        options = tf.data.Options()
        options.autotune.enabled = False
        return ds.prefetch(2).with_options(options)

    return dataset_fn


def _epoch_callback(worker: _Worker, seen: dict[int, list[int]]):
    """The Keras callback that does a worker's per-epoch work inside ``fit``: the fault
    injection and learning rate as an epoch begins, a progress line every
    ``PROGRESS_EVERY_S`` seconds (rank 0), and validation, report and checkpoint as it ends."""
    from fer._tf import keras

    config = worker.config

    class EpochWork(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            _chaos(epoch, worker.rank, worker.world)
            self.epoch, self.lr = epoch, learning_rate(config, epoch, _transfer(config))
            worker.model.optimizer.learning_rate.assign(self.lr)
            self.t0 = self.last = time.time()

        def on_train_batch_end(self, step, logs=None):
            now = time.time()
            if worker.rank == 0 and now - self.last >= PROGRESS_EVERY_S:
                self.last = now
                rate = (step + 1) * config.batch_size / (now - self.t0)
                loss = (logs or {}).get("loss", float("nan"))
                _say(f"epoch {self.epoch + 1}/{config.epochs}  step {step + 1}/{worker.steps}  loss {loss:.4f}  "
                     f"{rate:.0f} img/s")  # fmt: skip

        def on_epoch_end(self, epoch, logs=None):
            train_s = time.time() - self.t0
            val = worker.validate()
            worker.record(epoch, logs, val, self.lr, train_s, time.time() - self.t0, seen.pop(epoch))

    return EpochWork()


def find_checkpoints(*dirs: Path) -> list[tuple[dict, Path]]:
    """Complete checkpoints (a readable state and a model file) among ``dirs`` and the
    ``checkpoint_*`` directories inside them, with their states, newest first."""
    candidates = []
    for d in dirs:
        candidates += [d, *d.glob("checkpoint_*")]
    found = []
    for d in candidates:
        try:
            if (d / CHECKPOINT_MODEL).is_file():
                found.append((json.loads((d / CHECKPOINT_STATE).read_text()), d))
        except (OSError, ValueError) as exc:
            console.warn(f"{d}: not a complete checkpoint ({exc}); passed over")
    return sorted(found, key=lambda sd: sd[0]["epochs_done"], reverse=True)


def _restore(checkpoint, run_dir: Path) -> tuple[dict, object] | None:
    """The newest training state and model to resume from, or None to start afresh.

    Ray Train hands back the latest checkpoint it registered; a worker that dies right
    after reporting can beat that registration, so the run directory is searched too and
    the checkpoint with the most finished epochs wins (an unloadable one is skipped).
    """
    from fer._tf import keras

    dirs = [run_dir]
    if checkpoint is not None:
        with checkpoint.as_directory() as d:  # local storage: the directory itself, not a copy
            dirs.append(Path(d))
    for state, d in find_checkpoints(*dirs):
        try:
            return state, keras.models.load_model(str(d / CHECKPOINT_MODEL))
        except (OSError, ValueError) as exc:
            console.warn(f"{d}: cannot load its model ({exc}); resuming from an older checkpoint")
    return None


def _report(model, state: dict, metrics: dict, rank: int) -> None:
    """Save a checkpoint on every worker (saving a distributed model is collective) and
    hand rank 0's to Ray Train."""
    import ray.train

    with tempfile.TemporaryDirectory() as d:
        # Explicit format: tf-keras only infers the zip format from ".keras" on the main
        # thread, and Ray Train runs this loop on another one.
        model.save(str(Path(d) / CHECKPOINT_MODEL), save_format="keras_v3")
        (Path(d) / CHECKPOINT_STATE).write_text(json.dumps(state))
        checkpoint = ray.train.Checkpoint.from_directory(d) if rank == 0 else None
        ray.train.report({k: v for k, v in metrics.items() if v is not None}, checkpoint=checkpoint)
