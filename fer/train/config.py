"""The training configuration: built once (by the CLI or a Python caller), passed down."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from fer.data.augment import AugmentConfig
from fer.data.balance import BALANCE_MODES
from fer.errors import FerError
from fer.train import models
from fer.validation import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    NONE,
    POSITIVE,
    Interval,
    Options,
    validate,
)  # fmt: skip

SELECT_METRICS = ("val_macro_f1", "val_accuracy")
#: ``adamw``: AdamW (decoupled weight decay). ``sgd``: SGD with Nesterov momentum 0.9, the
#: optimizer of the best published FER-2013 VGG recipe (Khaireddin & Chen 2021).
OPTIMIZERS = ("adamw", "sgd")


#: What the augmentation options accept (a zoom of 0.5 already halves or doubles the face).
AUGMENT_CONSTRAINTS = {"erase": (Interval(0, 1),), "zoom": (Interval(0, 0.5),)}
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
    train_split: str = "train"
    val_split: str = "val"
    arch: str = "deep"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    label_smoothing: float = 0.1
    balance: str = "augment"
    balance_target: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    use_augment: bool = True
    # Transfer learning (vgg16, resnet50v2).
    weights: str | None = None
    input_size: int = 96
    freeze_epochs: int = 3
    fine_tune_blocks: int = 1
    fine_tune_lr: float = 1e-4
    init: str | None = None
    #: Distillation: a bundle (an ensemble, say) whose probabilities for each training face
    #: are mixed into its target with ``teacher_weight`` (the label keeps the rest).
    teacher: str | None = None
    teacher_weight: float = 0.5
    # Scale and fault tolerance.
    workers: int = 1
    cpus_per_worker: int | None = None
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    address: str | None = None
    select: str = "val_macro_f1"
    keep_checkpoints: int = 2
    seed: int = 0
    limit_per_class: int | None = None
    name: str | None = None
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
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        return cls(**d)
