"""The training driver: read the data, run Ray Train's ``TensorflowTrainer``, write the bundle.

A run directory (``TrainConfig.out``) holds Ray Train's checkpoints and snapshot, the
run's configuration (``fer_run.json``, for ``--resume``) and, at the end, the model
bundle in ``RUN_DIR/model`` built from the best checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fer._ray import TF_ENV, connect, require_gpus
from fer.data import sources
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.metrics import score
from fer.train.config import TrainConfig
from fer.validation import AT_LEAST_ONE, check

RUN_FILE = "fer_run.json"
DATA_FILE = "fer_data.json"
BUNDLE_DIR = "model"


def worker_env() -> dict[str, str]:
    """The environment of every training worker: :data:`fer._ray.TF_ENV`, plus the
    fault-injection switch when the driver has it set."""
    from fer.train.loop import CHAOS_ENV

    env = dict(TF_ENV)
    if os.environ.get(CHAOS_ENV):
        env[CHAOS_ENV] = os.environ[CHAOS_ENV]
    return env


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    bundle: Path
    best_epoch: int
    metrics: dict
    wall_seconds: float


def start(config: TrainConfig) -> TrainResult:
    """Start a new run in ``config.out``. Fails if that directory already holds a run.

    With ``config.init``, the architecture is the initial bundle's, whatever ``arch`` says.
    The bundles ``init`` and ``teacher`` are recorded as absolute paths (the workers read them,
    from a working directory of Ray's), and so is the ``extra`` source (the driver reads it
    again on ``--resume``, maybe from another folder).
    """
    paths = {k: str(Path(v).resolve()) for k in ("init", "teacher", "extra") if (v := getattr(config, k))}
    config = replace(config, **paths)
    check_extra(config)
    if config.init:
        from fer import bundle

        config = replace(config, arch=bundle.read_meta(config.init).get("architecture", config.arch))
    run_dir = Path(config.out).resolve()
    if (run_dir / RUN_FILE).exists():
        raise FerError(f"{run_dir} already holds a training run; continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    try:
        return _run(config, run_dir)
    except BaseException:
        from fer.train.loop import find_checkpoints

        if not find_checkpoints(run_dir):  # nothing to resume: the same command may simply be run again
            for name in (RUN_FILE, DATA_FILE):
                (run_dir / name).unlink(missing_ok=True)
        raise


#: What ``--resume`` may change: how long the run goes, where and in what arithmetic it runs
#: (float32 and mixed bfloat16 keep the same float32 weights), what it keeps; nothing that
#: would make its epochs differ from those of an uninterrupted run beyond rounding.
RESUMABLE = ("epochs", "address", "precision", "keep_checkpoints")


def resume(run_dir: str | Path, **changes) -> TrainResult:
    """Continue an interrupted run from its latest checkpoint, with any of :data:`RESUMABLE`
    changed (``None``: unchanged), e.g. ``resume("runs/deep", epochs=100)``."""
    run_dir = Path(run_dir).resolve()
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FerError(f"{run_dir} is not a fer training run (no {RUN_FILE})")
    if unknown := set(changes) - set(RESUMABLE):
        raise TypeError(f"resume() cannot change {', '.join(sorted(unknown))}")  # a caller's bug
    config = TrainConfig.from_dict(json.loads(path.read_text()))
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        config = replace(config, **changes)
        path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return _run(config, run_dir)


def _run(config: TrainConfig, run_dir: Path) -> TrainResult:
    import ray.train
    from ray.train.tensorflow import TensorflowTrainer

    from fer.train.loop import epoch_size, train_loop_per_worker

    t0 = time.time()
    connect(config.address)
    if config.gpus_per_worker:
        require_gpus(
            config.gpus_per_worker * config.workers,
            f"--gpus-per-worker {config.gpus_per_worker:g} x --workers {config.workers}",
        )
    train, val = _read_splits(config)
    print(f"[fer] train: {train.describe()}")
    print(f"[fer] val:   {val.describe()}")
    _write_data_info(run_dir, train, val)
    size = epoch_size(config, train.counts)
    plan = {"config": config.to_dict(), "train_counts": train.counts, "epoch_size": size, "run_dir": str(run_dir)}

    # Folder and CSV order groups classes together: shuffle so every worker's shard holds
    # every class. Materialised here, because the workers take every CPU once they start.
    shuffled = train.dataset.random_shuffle(seed=config.seed).materialize()
    cpus = config.resolved_cpus()
    resources = {"CPU": cpus, **({"GPU": config.gpus_per_worker} if config.gpus_per_worker else {})}
    trainer = TensorflowTrainer(
        train_loop_per_worker,
        train_loop_config=plan,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.workers,
            use_gpu=config.gpus_per_worker > 0,
            resources_per_worker=resources,
        ),
        datasets={"train": shuffled, "val": val.dataset},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=run_dir.name,
            worker_runtime_env={"env_vars": worker_env()},
            storage_path=str(run_dir.parent),
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=config.keep_checkpoints,
                checkpoint_score_attribute=config.select,
                checkpoint_score_order="max",
            ),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    written = write_bundle(run_dir)
    best = bundle_meta(written)["training"]
    print(f"[fer] best epoch {best['best_epoch']} of {best['epochs']}: bundle written to {written}")
    metrics = best["history"][best["best_epoch"] - 1]
    return TrainResult(run_dir, written, best["best_epoch"], metrics, time.time() - t0)


def _read_splits(config: TrainConfig):
    """The training and validation splits; each must hold every class (a class missing from
    training cannot be learnt, one missing from validation cannot be scored)."""
    splits = []
    for split, targets in ((config.train_split, config.targets),
                           (config.val_split, sources.validation_targets(config.targets))):  # fmt: skip
        faces = sources.read_split(config.data, split, targets=targets, limit_per_class=config.limit_per_class)
        missing = [name for name, n in zip(EMOTIONS, faces.counts, strict=True) if n == 0]
        if missing:
            raise FerError(
                f"{faces.source} has no images of {', '.join(missing)} (missing or empty class folders); "
                f"fer trains on all {len(EMOTIONS)} FER-2013 classes"
            )
        splits.append(faces)
    if config.extra is not None:
        try:
            extra = sources.read_split(config.extra, config.train_split, limit_per_class=config.limit_per_class)
        except FerError as exc:
            raise FerError(f"--extra: {exc}") from None
        splits[0] = splits[0].joined(extra, config.extra_weight)
    return tuple(splits)


def check_extra(config: TrainConfig) -> None:
    """``--extra``, when given, must be faces (cropped, with a training split), not uncropped
    photos (checked where the run starts: the workers never read it)."""
    from fer.data import ferplus, wild

    extra = Path(config.extra) if config.extra is not None else None
    if extra is None or extra.is_file():  # a FER-2013 CSV: its reader says what is wrong with it
        return
    if not extra.is_dir():
        raise FerError(f"--extra: no such folder or file {extra}")
    if wild.is_wild(extra):
        raise FerError(
            f"--extra: {extra} holds uncropped photos; cut their faces first: fer data crop {extra} --out CROPS"
        )
    if not ferplus.is_ferplus(extra) and not (extra / config.train_split).is_dir():
        raise FerError(f"--extra: no split folder {extra / config.train_split} (--train-split is {config.train_split})")


def _write_data_info(run_dir: Path, train, val) -> None:
    """Record what the run trains and selects on (source, counts, fingerprint) for its bundles."""
    data = {
        split: {"source": faces.source, "counts": faces.counts, "fingerprint": faces.fingerprint}
        for split, faces in (("train", train), ("val", val))
    }
    (run_dir / DATA_FILE).write_text(json.dumps(data, indent=2) + "\n")


def bundle_meta(path: Path) -> dict:
    from fer import bundle

    return bundle.read_meta(path)


def _lineage(parent: dict) -> dict:
    """What a fine-tuned bundle keeps of the bundle it started from (``--init``): its id,
    how it was trained (command, epochs, wall time, its own ``init``) and its validation
    accuracy, so a model's whole training stays on record after the parent is gone."""
    training = parent.get("training", {})
    keep = ("command", "epochs", "best_epoch", "wall_seconds", "init")
    return {
        "id": parent.get("id"),
        "name": parent.get("name"),
        **{k: training[k] for k in keep if k in training},
        "val_accuracy": parent.get("validation", {}).get("accuracy"),
    }


def write_bundle(run_dir: str | Path, out: str | Path | None = None, *, average: int = 1) -> Path:
    """Write the bundle of a run's best checkpoint so far (to ``RUN_DIR/model`` by default).

    Works on a finished, interrupted or still running run: it reads the checkpoints on disk.
    The weights and validation figures come from the best checkpoint by the run's
    ``select`` metric; the history, epoch count and training time from the latest.
    ``training.wall_seconds`` is the wall-clock time of the run's epochs (training and
    validation), summed over every invocation (``--resume``) and restart; start-ups excluded.

    ``average`` > 1 averages the weights of the run's ``average`` best checkpoints (Izmailov
    et al. 2018; one model's cost) and scores the result on the validation split afresh. On
    FER-2013 it gained 0.5 point over checkpoints from the middle of a cosine schedule and lost
    0.3-0.5 at its end, where the checkpoints are nearly one model: the scores say which.
    """
    from fer import bundle
    from fer.train.loop import find_checkpoints

    check("average", average, AT_LEAST_ONE)
    run_dir = Path(run_dir).resolve()
    if not (run_dir / RUN_FILE).is_file():
        raise FerError(f"{run_dir} is not a fer training run (no {RUN_FILE})")
    config = TrainConfig.from_dict(json.loads((run_dir / RUN_FILE).read_text()))
    found = find_checkpoints(run_dir)
    if not found:
        raise FerError(f"{run_dir} has no checkpoint yet: wait for the first epoch to finish")
    if average > len(found):
        raise FerError(
            f"--average: {run_dir} holds {len(found)} checkpoint(s), fewer than {average} "
            "(a run keeps --keep-checkpoints of them; resume it with a larger one)"
        )
    ranked = sorted(found, key=lambda sd: sd[0]["history"][-1][config.select], reverse=True)
    chosen = ranked[:average]
    run_state, _ = max(found, key=lambda sd: sd[0]["epochs_done"])
    if not (run_dir / DATA_FILE).is_file():  # runs started before fer recorded it
        connect(config.address)
        _write_data_info(run_dir, *(_read_splits(config)))
    data = json.loads((run_dir / DATA_FILE).read_text())
    model = _averaged_model([path for _, path in chosen])
    validation = chosen[0][0]["validation"] if average == 1 else _validate(model, config)
    meta = {
        "name": config.name or f"fer-{config.arch}",
        "architecture": config.arch,
        "training": {
            "command": config.command,
            "config": config.to_dict(),
            "epochs": run_state["epochs_done"],
            "best_epoch": chosen[0][0]["epochs_done"],
            **({"averaged_epochs": sorted(s["epochs_done"] for s, _ in chosen)} if average > 1 else {}),
            "wall_seconds": round(run_state["train_seconds"], 1),
            "data": data,
            "history": run_state["history"],
        },
        "validation": {"split": data["val"]["source"], **validation},
    }
    for parent in ("init", "teacher"):  # the bundles this one was made from
        if getattr(config, parent):
            meta["training"][parent] = _lineage(bundle.read_meta(getattr(config, parent)))
    return bundle.save(model, Path(out) if out else run_dir / BUNDLE_DIR, meta)


def _averaged_model(checkpoints: list[Path]):
    """The float32 tf-keras model of the first checkpoint with every weight (batch-norm
    statistics included) the mean of the checkpoints' weights."""
    import numpy as np

    from fer._tf import keras
    from fer.train import precision
    from fer.train.loop import CHECKPOINT_MODEL

    loaded = [keras.models.load_model(str(path / CHECKPOINT_MODEL), compile=False) for path in checkpoints]
    model = loaded[0]
    if not precision.computes_in(model, "float32"):  # trained in mixed precision: its weights are float32 already
        model = precision.cast(model, "float32")
    if len(loaded) > 1:
        model.set_weights([np.mean(ws, axis=0) for ws in zip(*(m.get_weights() for m in loaded), strict=True)])
    return model


def _validate(model, config: TrainConfig) -> dict:
    """``model``'s scores on the run's validation split, as a checkpoint records them."""
    import numpy as np

    connect(config.address)
    faces = sources.read_split(config.data, config.val_split, targets=sources.validation_targets(config.targets),
                               limit_per_class=config.limit_per_class)  # fmt: skip
    images, labels = faces.to_numpy()
    probs = model.predict(images[..., None].astype(np.float32), batch_size=256, verbose=0)
    return score(labels, probs).to_dict()
