"""Training throughput: `fer train` with one Ray Train worker against a plain tf-keras fit.

Both train the same architecture on the same images with the same batch size and thread
count, without augmentation or balancing (those are fer's features, not overhead), in one
run. Epoch 1 (graph tracing) is left out of both. The ratio plain / fer is Ray Train's
overhead (target: at most 1.15). Then `fer train` again in mixed bfloat16 (``--precision
bfloat16``): the ratio bfloat16 / float32 is what mixed precision gains on this machine's CPUs.

Usage: python benchmarks/train_throughput.py [--data ../shared/data/fer2013] [--arch deep] [--per-class 600]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import this_machine  # noqa: E402 (benchmarks/ is the script's folder)


def plain_fit(images: np.ndarray, labels: np.ndarray, arch: str, batch: int, epochs: int, threads: int) -> float:
    """Images/s of a single-process tf-keras fit, epochs 2..N."""
    from fer._tf import keras, tf
    from fer.labels import NUM_CLASSES
    from fer.train import models

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    model = models.build(arch)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=["accuracy"],
    )
    steps = len(images) // batch
    n = steps * batch
    x = images[:n, :, :, None].astype(np.float32)
    y = np.eye(NUM_CLASSES, dtype=np.float32)[labels[:n]]
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        rates.append(n / (time.perf_counter() - t))
    return float(np.mean(rates[1:]))


def fer_fit(data: str, arch: str, batch: int, epochs: int, per_class: int, threads: int, precision: str) -> float:
    """Images/s that `fer train` (one worker, in ``precision``) reports, epochs 2..N."""
    from fer.train import trainer
    from fer.train.config import TrainConfig

    with tempfile.TemporaryDirectory() as d:
        config = TrainConfig(
            data=data, out=str(Path(d) / "run"), arch=arch, epochs=epochs, batch_size=batch, balance="none",
            use_augment=False, workers=1, cpus_per_worker=threads, limit_per_class=per_class, precision=precision,
        )  # fmt: skip
        result = trainer.start(config)
        history = json.loads((result.bundle / "model.json").read_text())["training"]["history"]
    return float(np.mean([h["images_per_s"] for h in history[1:]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"))
    parser.add_argument("--arch", default="deep")
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="`small`, 16 images a class, 1 epoch: for the tests")
    args = parser.parse_args()
    print(this_machine(), flush=True)  # the machine every figure below is of
    if args.smoke:
        args.arch, args.per_class, args.epochs = "small", 16, 1
    threads = os.cpu_count() or 1

    from fer._ray import connect
    from fer.data import fer2013

    connect(None)
    images, labels = fer2013.read_split(args.data, "train", limit_per_class=args.per_class).to_numpy()
    order = np.random.default_rng(0).permutation(len(labels))
    plain = plain_fit(images[order], labels[order], args.arch, args.batch_size, args.epochs, threads)
    print(f"plain tf-keras fit: {plain:.0f} images/s ({len(labels)} images, {args.arch}, batch {args.batch_size})")
    ours = fer_fit(args.data, args.arch, args.batch_size, args.epochs, args.per_class, threads, "float32")
    print(f"fer train, 1 worker: {ours:.0f} images/s")
    print(f"ratio plain / fer train: {plain / ours:.3f} (target <= 1.15)")
    mixed = fer_fit(args.data, args.arch, args.batch_size, args.epochs, args.per_class, threads, "bfloat16")
    print(f"fer train --precision bfloat16: {mixed:.0f} images/s, {mixed / ours:.2f}x float32")


if __name__ == "__main__":
    main()
