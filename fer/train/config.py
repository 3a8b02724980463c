"""The training configuration: built once (by the CLI or a Python caller), passed down."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from fer.data.augment import AugmentConfig
from fer.data.balance import BALANCE_MODES
from fer.data.ferplus import TARGET_MODES
from fer.data.sources import DEFAULT_TARGETS, TARGETS
from fer.errors import FerError
from fer.train import models
from fer.train.precision import PRECISIONS
from fer.validation import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    NONE,
    POSITIVE,
    PROBABILITY,
    Interval,
    Options,
    option,
    validate,
)  # fmt: skip

SELECT_METRICS = ("val_macro_f1", "val_accuracy")
#: ``adamw``: AdamW (decoupled weight decay). ``sgd``: SGD with Nesterov momentum 0.9, the
#: optimizer of the best published FER-2013 VGG recipe (Khaireddin & Chen 2021).
OPTIMIZERS = ("adamw", "sgd")


#: What the augmentation options accept (a zoom of 0.5 already halves or doubles the face).
AUGMENT_CONSTRAINTS = {
    "erase": (Interval(0, 1),),
    "zoom": (Interval(0, 0.5),),
    "shift": (Interval(0, 0.5),),
    "mixup": (Interval(0, None),),
    "gamma": (Interval(0, 0.9),),
    "equalize": (PROBABILITY,),
    "degrade": (PROBABILITY,),
}
#: What each option of :class:`TrainConfig` accepts (checked once, when it is built).
TRAIN_CONSTRAINTS = {
    "epochs": (AT_LEAST_ONE,),
    "batch_size": (AT_LEAST_ONE,),
    "lr": (POSITIVE,),
    "weight_decay": (NON_NEGATIVE,),
    "optimizer": (Options(OPTIMIZERS),),
    "label_smoothing": (Interval(0, 0.5),),  # beyond 0.5 the target is flatter than it is right
    "balance": (Options(BALANCE_MODES),),
    "balance_target": (NONE, AT_LEAST_ONE),
    "input_size": (Interval(32, None, integer=True),),  # the smallest input keras.applications backbones take
    "freeze_epochs": (NON_NEGATIVE_INT,),
    "fine_tune_blocks": (NON_NEGATIVE_INT,),
    "fine_tune_lr": (POSITIVE,),
    "workers": (AT_LEAST_ONE,),
    "cpus_per_worker": (NONE, AT_LEAST_ONE),
    "gpus_per_worker": (NON_NEGATIVE,),
    "max_failures": (NON_NEGATIVE_INT,),
    "select": (Options(SELECT_METRICS),),
    "keep_checkpoints": (AT_LEAST_ONE,),
    "seed": (NON_NEGATIVE_INT,),
    "limit_per_class": (NONE, AT_LEAST_ONE),
    "teacher_weight": (Interval(0, 1),),
    "extra_weight": (POSITIVE,),
    "teacher_temperature": (POSITIVE,),
    "precision": (Options(PRECISIONS),),
    "targets": (TARGET_MODES,),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. See ``fer train --help`` for the options.

    ``batch_size`` is global: it is split evenly over the workers. ``balance_target`` is
    the per-class count minority classes are raised to (``None``: the largest class).
    ``cpus_per_worker`` of ``None`` takes the local machine's cores divided by ``workers``
    (on a cluster, pass it explicitly).
    """

    data: str
    out: str
    train_split: str = option("train", "Split to train on.")
    val_split: str = option("val", "Split to select the best epoch on.")
    targets: str = option(
        DEFAULT_TARGETS,
        f"FER+ data: {' | '.join(TARGETS)} | mix:W (vote distribution; majority one-hot; FER-2013's label; "
        "the votes with share W (both: 0.5) and FER-2013's label mixed). Validation scores FER+'s majority "
        "(FER-2013's label with fer2013).",
    )
    arch: str = option("deep", f"Architecture: {models.ARCHITECTURES.help()}.")
    epochs: int = 30
    batch_size: int = option(64, "Global batch size, split over the workers.")
    lr: float = option(1e-3, "Peak learning rate (cosine decay).")
    weight_decay: float = option(1e-4, "Weight decay (decoupled, scaled by the learning rate).")
    optimizer: str = option("adamw", f"{' | '.join(OPTIMIZERS)} (Nesterov momentum 0.9).")
    label_smoothing: float = option(0.1, "Label smoothing of the loss.")
    balance: str = option("augment", f"{' | '.join(BALANCE_MODES)}.")
    balance_target: int | None = option(None, "Raise smaller classes to this count per epoch (default: the largest).")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    use_augment: bool = True
    # Transfer learning (vgg16, resnet50v2).
    weights: str | None = option(None, "Transfer backbones: imagenet | none | PATH to a *_notop.h5 file.")
    input_size: int = option(96, "Transfer backbones: faces are upscaled to this size.")
    freeze_epochs: int = option(3, "Transfer backbones: epochs with the backbone frozen.")
    fine_tune_blocks: int = option(1, "Transfer backbones: top blocks unfrozen after that.")
    fine_tune_lr: float = option(1e-4, "Transfer backbones: learning rate after unfreezing.")
    init: str | None = option(None, "Start from this model bundle (fine-tune it).")
    #: A second source of training faces (in-the-wild crops, say: `fer data crop`), one-hot
    #: labels, its own share of the loss; validation stays on ``data``'s split.
    extra: str | None = option(
        None, "A second source of training faces (image folders ROOT/<split>/<class>/, e.g. from fer data crop): "
        "its training split joins --data's."
    )  # fmt: skip
    extra_weight: float = option(1.0, "With --extra: the loss weight of each of its faces (a face of --data: 1).")
    #: Distillation: a bundle (an ensemble, say) whose probabilities for each training face
    #: are mixed into its target with ``teacher_weight`` (the label keeps the rest).
    teacher: str | None = option(None, "Distil this bundle (an ensemble, say): its probabilities join each target.")
    teacher_weight: float = option(0.5, "With --teacher: the teacher's share of the target (the label has the rest).")
    teacher_temperature: float = option(
        1.0, "With --teacher: its probabilities raised to 1/T and renormalised (T > 1 softens them)."
    )
    # Scale and fault tolerance.
    workers: int = option(1, "Data-parallel training workers.")
    cpus_per_worker: int | None = option(None, "CPUs per worker (default: local cores / workers).")
    gpus_per_worker: float = option(0.0, "GPUs per worker (0: CPU training).")
    precision: str = option(
        "auto", f"{' | '.join(PRECISIONS)} (mixed): auto takes bfloat16 on CPUs that compute it natively."
    )
    max_failures: int = option(2, "Worker failures to survive by restarting from the latest checkpoint.")
    address: str | None = option(None, "Ray cluster address (default: RAY_ADDRESS, else a local Ray).")
    select: str = option("val_macro_f1", f"{' | '.join(SELECT_METRICS)}: how the best epoch is chosen.")
    keep_checkpoints: int = option(2, "Checkpoints kept on disk: the best ones by --select (and the newest).")
    seed: int = option(0, "Random seed for sampling and augmentation.")
    limit_per_class: int | None = option(None, "Use at most this many images per class (quick runs).")
    name: str | None = option(None, "Model name recorded in the bundle.")
    command: str | None = None

    def __post_init__(self) -> None:
        models.spec(self.arch)
        validate(self, TRAIN_CONSTRAINTS)
        validate(self.augment, AUGMENT_CONSTRAINTS)
        if self.batch_size < self.workers:
            raise FerError(f"--batch-size {self.batch_size} is smaller than --workers {self.workers}")
        if self.teacher is not None:
            from fer.bundle import read_meta

            read_meta(self.teacher)
        if self.weights not in (None, "none", "imagenet") and not Path(self.weights).is_file():
            raise FerError(f"--weights: no such weights file {self.weights}")

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.workers

    def resolved_cpus(self) -> int:
        """CPUs each worker reserves and gives TensorFlow as threads."""
        if self.cpus_per_worker is not None:
            return self.cpus_per_worker
        if self.address:
            return 1
        return max(1, (os.cpu_count() or 1) // self.workers)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d.setdefault("precision", "float32")  # what runs recorded before the option trained in
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        return cls(**d)
