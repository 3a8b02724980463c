"""The ``fer`` command line: a thin layer that builds configs and calls the library."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fer.errors import FerError
from fer.model import TTA
from fer.train.models import ARCHITECTURES
from fer.video.faces import DETECTORS
from fer.video.pipeline import LabelConfig

#: The library's label defaults, shown by the CLI (defined once, in LabelConfig).
LABEL_DEFAULTS = LabelConfig(inputs=(), out="")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Facial emotion recognition at archive scale: train models, label videos, query timelines.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect FER-2013-style datasets.")
app.add_typer(data_app, name="data")
jobs_app = typer.Typer(no_args_is_help=True, help="Follow and control jobs submitted to a Ray cluster.")
app.add_typer(jobs_app, name="jobs")

ADDRESS_HELP = "Ray job API address, e.g. http://127.0.0.1:8265 (default: RAY_ADDRESS)."


def _address(address: Optional[str]) -> str:
    import os

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise FerError("give the cluster's job API with --address http://HOST:8265 (or set RAY_ADDRESS)")
    return address


def _cluster(address: Optional[str]) -> Optional[str]:
    """The Ray cluster a query runs on: ``--address``, else ``RAY_ADDRESS``, else none (here)."""
    import os

    return address or os.environ.get("RAY_ADDRESS") or None


def _command_line() -> str:
    return shlex.join(["fer", *sys.argv[1:]])


@data_app.command("stats")
def data_stats(
    root: Annotated[str, typer.Argument(help="Image-folder root (ROOT/<split>/<class>/) or a FER-2013 CSV.")],
) -> None:
    """Print per-split, per-class image counts."""
    from fer.data.fer2013 import split_counts
    from fer.evaluate import format_counts

    typer.echo(format_counts(split_counts(root)))


@app.command()
def train(
    data: Annotated[Optional[str], typer.Option(help="Image-folder root or FER-2013 CSV.")] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Run directory: checkpoints and the final bundle (RUN_DIR/model).")
    ] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the interrupted run in this directory.")] = None,
    train_split: Annotated[str, typer.Option(help="Split to train on.")] = "train",
    val_split: Annotated[str, typer.Option(help="Split to select the best epoch on.")] = "val",
    arch: Annotated[str, typer.Option(help=f"Architecture: {ARCHITECTURES.help()}.")] = "deep",
    epochs: Annotated[
        Optional[int], typer.Option(help="Epochs to train (with --resume: extend the run to this many).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch size, split over the workers.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine decay).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="Weight decay (decoupled, scaled by the learning rate).")] = 1e-4,
    optimizer: Annotated[str, typer.Option(help="adamw | sgd (Nesterov momentum 0.9).")] = "adamw",
    erase: Annotated[float, typer.Option(help="Probability of random erasing per training image.")] = 0.0,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the loss.")] = 0.1,
    balance: Annotated[str, typer.Option(help="augment | class-weight | none.")] = "augment",
    balance_target: Annotated[
        Optional[int], typer.Option(help="Raise smaller classes to this count per epoch (default: the largest class).")
    ] = None,
    augment: Annotated[bool, typer.Option(help="Randomly augment every training image.")] = True,
    weights: Annotated[
        Optional[str], typer.Option(help="Transfer backbones: imagenet | none | PATH to a *_notop.h5 file.")
    ] = None,
    input_size: Annotated[int, typer.Option(help="Transfer backbones: faces are upscaled to this size.")] = 96,
    freeze_epochs: Annotated[int, typer.Option(help="Transfer backbones: epochs with the backbone frozen.")] = 3,
    fine_tune_blocks: Annotated[int, typer.Option(help="Transfer backbones: top blocks unfrozen after that.")] = 1,
    fine_tune_lr: Annotated[float, typer.Option(help="Transfer backbones: learning rate after unfreezing.")] = 1e-4,
    init: Annotated[Optional[Path], typer.Option(help="Start from this model bundle (fine-tune it).")] = None,
    workers: Annotated[int, typer.Option(help="Data-parallel training workers.")] = 1,
    cpus_per_worker: Annotated[
        Optional[int], typer.Option(help="CPUs per worker (default: local cores / workers).")
    ] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker (0: CPU training).")] = 0.0,
    max_failures: Annotated[
        int, typer.Option(help="Worker failures to survive by restarting from the latest checkpoint.")
    ] = 2,
    address: Annotated[
        Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray).")
    ] = None,
    select: Annotated[
        str, typer.Option(help="val_macro_f1 | val_accuracy: how the best epoch is chosen.")
    ] = "val_macro_f1",
    seed: Annotated[int, typer.Option(help="Random seed for sampling and augmentation.")] = 0,
    limit_per_class: Annotated[
        Optional[int], typer.Option(help="Use at most this many images per class (quick runs).")
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Model name recorded in the bundle.")] = None,
) -> None:
    """Train an emotion classifier on Ray Train and write a model bundle into RUN_DIR/model."""
    from fer.data.augment import AugmentConfig
    from fer.train import trainer
    from fer.train.config import TrainConfig

    if resume is not None:
        result = trainer.resume(resume, epochs=epochs, address=address)
    else:
        if data is None or out is None:
            raise FerError("fer train needs --data ROOT and --out RUN_DIR (or --resume RUN_DIR)")
        config = TrainConfig(
            data=str(data),
            out=str(out),
            train_split=train_split,
            val_split=val_split,
            arch=arch,
            epochs=epochs or 30,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            optimizer=optimizer,
            label_smoothing=label_smoothing,
            balance=balance,
            balance_target=balance_target,
            use_augment=augment,
            augment=AugmentConfig(erase=erase),
            weights=weights,
            input_size=input_size,
            freeze_epochs=freeze_epochs,
            fine_tune_blocks=fine_tune_blocks,
            fine_tune_lr=fine_tune_lr,
            init=str(init) if init else None,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            max_failures=max_failures,
            address=address,
            select=select,
            seed=seed,
            limit_per_class=limit_per_class,
            name=name,
            command=_command_line(),
        )
        result = trainer.start(config)
    typer.echo(f"model bundle: {result.bundle}")


@app.command("bundle")
def bundle_command(
    run_dir: Annotated[Path, typer.Argument(help="A training run directory (finished, interrupted or running).")],
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory to write (default: RUN_DIR/model).")] = None,
) -> None:
    """Write the model bundle of a training run's best checkpoint so far."""
    from fer.train.trainer import export

    typer.echo(f"model bundle: {export(run_dir, out)}")


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(help="Image-folder root or FER-2013 CSV.")],
    model: Annotated[Optional[Path], typer.Option(help="Model bundle (default: the shipped model).")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "val",
    tta: Annotated[str, typer.Option(help=f"Test-time augmentation: {TTA.help()}.")] = "none",
    limit_per_class: Annotated[Optional[int], typer.Option(help="Use at most this many images per class.")] = None,
    detect: Annotated[
        bool,
        typer.Option(help="Images are uncropped: detect, align and crop the largest face first, as fer label does."),
    ] = False,
    detector: Annotated[str, typer.Option(help="With --detect: the face detector.")] = LABEL_DEFAULTS.detector,
    min_face: Annotated[int, typer.Option(help="With --detect: smallest face (pixels).")] = LABEL_DEFAULTS.min_face,
    align: Annotated[bool, typer.Option(help="With --detect: align crops on the eyes.")] = LABEL_DEFAULTS.align,
) -> None:
    """Print accuracy, macro-F1, per-class precision/recall and the confusion matrix."""
    from fer import model as bundle
    from fer.evaluate import evaluate_detected, format_scores

    emotion_model = bundle.load(model)
    if detect:
        DETECTORS.get(detector)
        result = evaluate_detected(
            emotion_model, data, split, detector=detector, min_face=min_face, align=align, tta=tta,
            limit_per_class=limit_per_class,
        )  # fmt: skip
        typer.echo(
            f"model {emotion_model.name} ({emotion_model.id}) on {data} [{split}], detector={detector}, "
            f"align={align}, tta={tta}\n"
            f"faces found in {result.images - result.missed} of {result.images} images "
            f"({result.missed} missed); end-to-end accuracy (a miss counts as wrong) {result.end_to_end:.4f}\n"
            "on the images with a face found:\n"
        )
        typer.echo(format_scores(result.scores))
        return
    import ray

    from fer._ray import quiet_ray_data
    from fer.evaluate import evaluate as run

    ray.init(logging_level="WARNING", include_dashboard=False)
    quiet_ray_data()
    scores = run(emotion_model, data, split, tta=tta, limit_per_class=limit_per_class)
    typer.echo(f"model {emotion_model.name} ({emotion_model.id}) on {data} [{split}], tta={tta}\n")
    typer.echo(format_scores(scores))


@app.command()
def label(
    inputs: Annotated[
        list[str], typer.Argument(help="Video or image files, folders (searched recursively) or .txt lists of paths.")
    ],
    out: Annotated[
        str,
        typer.Option(help="Output folder or URI (s3://bucket/prefix): timelines/*.parquet and manifest/*.json."),
    ],
    model: Annotated[Optional[Path], typer.Option(help="Model bundle (default: the shipped model).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second to sample (default: every frame).")] = None,
    detector: Annotated[str, typer.Option(help=f"Face detector: {DETECTORS.help()}.")] = LABEL_DEFAULTS.detector,
    min_face: Annotated[
        int, typer.Option(help="Ignore faces smaller than this (pixels); YuNet detects at the scale it allows.")
    ] = LABEL_DEFAULTS.min_face,
    align: Annotated[
        bool, typer.Option(help="Level the eyes and frame each face as FER-2013 does before classifying.")
    ] = LABEL_DEFAULTS.align,
    batch_size: Annotated[int, typer.Option(help="Faces per classifier batch.")] = 256,
    gpus: Annotated[int, typer.Option(help="Classifier actors with one GPU each (0: on the CPUs).")] = 0,
    decoders: Annotated[Optional[int], typer.Option(help="Decode+detect actors (default: one per CPU).")] = None,
    segment_seconds: Annotated[float, typer.Option(help="Split videos into segments this long.")] = 60.0,
    tta: Annotated[str, typer.Option(help=f"Test-time augmentation: {TTA.help()}.")] = "none",
    overwrite: Annotated[bool, typer.Option(help="Redo videos the manifest says are done.")] = False,
    address: Annotated[
        Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else local).")
    ] = None,
) -> None:
    """Label videos and images: per-frame, per-face emotion timelines as Parquet, one file per video."""
    from fer.video.pipeline import run

    config = LabelConfig(
        inputs=tuple(inputs), out=str(out), model=str(model) if model else None, fps=fps, detector=detector,
        min_face=min_face, align=align, batch_size=batch_size, gpus=gpus, decoders=decoders,
        segment_seconds=segment_seconds, tta=tta, overwrite=overwrite, address=address,
    )  # fmt: skip
    summary = run(config)
    typer.echo(format_label_summary(summary))
    if summary.count("failed"):
        raise typer.Exit(1)


def format_label_summary(summary) -> str:
    """The end-of-run table: one line per video, then totals."""
    from fer.schema import TIMELINES_DIR

    lines = [f"{'video':<44}{'status':<9}{'frames':>8}{'faces':>8}{'video s':>9}  reason"]
    for e in summary.entries:
        lines.append(f"{e.video_id[:43]:<44}{e.status:<9}{e.frames:>8}{e.faces:>8}{e.seconds:>9.1f}  {e.reason}")
    rate = summary.frames / summary.seconds if summary.seconds else 0.0
    lines.append(
        f"{len(summary.entries)} videos: {summary.count('done')} done, {summary.count('skipped')} skipped, "
        f"{summary.count('failed')} failed; {summary.frames} frames, {summary.faces} faces labelled in "
        f"{summary.seconds:.1f} s ({rate:.0f} frames/s); timelines in {summary.out / TIMELINES_DIR}"
    )
    return "\n".join(lines)


# The timelines argument of summary, plot and export.
TimelinesArg = Annotated[str, typer.Argument(help="A fer label output (folder or URI), its timelines/, or one file.")]


def _one_video(directory: str, video: Optional[str]) -> str:
    """The video to act on: the one given, or the only one in the directory."""
    from fer.timelines import timeline_files

    if video is not None:
        return video
    files = timeline_files(directory)
    if len(files) > 1:
        raise FerError(f"{directory} holds {len(files)} videos; choose one with --video (e.g. {next(iter(files))})")
    return next(iter(files))


OUTPUT_FORMATS = ("table", "csv", "json", "parquet")
# Options shared by the archive queries (summary, query).
FormatOpt = Annotated[str, typer.Option(help=f"{' | '.join(OUTPUT_FORMATS)}.")]
OutOpt = Annotated[Optional[Path], typer.Option(help="File to write (default: standard output).")]
ClusterOpt = Annotated[
    Optional[str], typer.Option(help="Ray cluster to run the query on (default: RAY_ADDRESS, else here).")
]


def _emit(table, format: str, out: Optional[Path], *, shown=None) -> None:
    """Write a result table as ``format`` to ``out`` (or standard output; parquet needs ``out``)."""
    if format not in OUTPUT_FORMATS:
        raise FerError(f"--format: unknown format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if format == "parquet":
        if out is None:
            raise FerError("--format parquet needs --out FILE")
        table.to_parquet(out, index=False)
        typer.echo(f"parquet: {out} ({len(table)} rows)")
        return
    if format == "csv":
        text = table.to_csv(index=False)
    elif format == "json":
        text = table.to_json(orient="records", indent=2) + "\n"
    else:
        text = (table if shown is None else shown).to_string(index=False, float_format=lambda v: f"{v:.2f}") + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"{format}: {out} ({len(table)} rows)")


def _table_view(table):
    """The summary as a table for people: shares only, named by emotion."""
    shown = table.drop(columns=[c for c in table.columns if c.startswith("mean_")])
    shown.columns = [c.removeprefix("share_") for c in shown.columns]
    return shown


@app.command()
def summary(
    directory: TimelinesArg,
    video: Annotated[Optional[list[str]], typer.Option(help="Video id(s) to summarise (default: all).")] = None,
    by: Annotated[str, typer.Option(help="video | face.")] = "video",
    format: FormatOpt = "table",
    out: OutOpt = None,
    address: ClusterOpt = None,
) -> None:
    """Time-weighted emotion shares, dominant emotion and face presence per video or face.

    Reads the per-video aggregates fer label writes, so it is quick on any archive size.
    Example: fer summary out --by face --format csv
    """
    from fer import timelines

    table = timelines.summary(directory, videos=video, by=by, address=_cluster(address))
    _emit(table, format, out, shown=_table_view(table))


@app.command()
def query(
    directory: TimelinesArg,
    where: Annotated[
        Optional[str],
        typer.Option(help="SQL condition on timeline rows, e.g. \"emotion = 'happy' AND confidence > 0.8\"."),
    ] = None,
    columns: Annotated[Optional[str], typer.Option(help="Comma-separated columns to return (default: all).")] = None,
    video: Annotated[Optional[list[str]], typer.Option(help="Only these video ids.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many rows.")] = None,
    top_videos: Annotated[
        Optional[int], typer.Option(help="Instead: the N videos with the largest share of --emotion.")
    ] = None,
    emotion: Annotated[str, typer.Option(help="The emotion --top-videos ranks by.")] = "happy",
    minutes: Annotated[bool, typer.Option(help="Instead: minutes of each emotion per video (or --by face).")] = False,
    by: Annotated[str, typer.Option(help="With --minutes: video | face.")] = "video",
    format: FormatOpt = "table",
    out: OutOpt = None,
    address: ClusterOpt = None,
) -> None:
    """Query a whole archive: rows matching a condition, top videos by an emotion, emotion minutes.

    Example: fer query out --where "emotion = 'fear' AND confidence > 0.7" --columns video_id,time_s,fear
    """
    from fer import timelines

    address = _cluster(address)
    if top_videos is not None:
        table = timelines.top_videos(directory, emotion, top_videos, address=address)
        _emit(table, format, out, shown=_table_view(table))
    elif minutes:
        _emit(timelines.emotion_minutes(directory, by=by, address=address), format, out)
    else:
        cols = [c.strip() for c in columns.split(",")] if columns else None
        _emit(timelines.scan(directory, where, cols, videos=video, limit=limit, address=address), format, out)


@app.command()
def plot(
    directory: TimelinesArg,
    out: Annotated[Path, typer.Option(help="Image file to write (.png, .svg, .pdf).")],
    video: Annotated[Optional[str], typer.Option(help="Video id (default: the only one).")] = None,
    face: Annotated[Optional[int], typer.Option(help="Plot only this face.")] = None,
    smooth: Annotated[Optional[float], typer.Option(help="Smooth with an EMA of this many seconds.")] = None,
) -> None:
    """Plot the emotion probabilities over time, one panel per face."""
    from fer import timelines
    from fer.plot import plot_timeline

    video = _one_video(directory, video)
    df = timelines.read(directory, videos=video, faces=face)
    if smooth:
        df = timelines.smooth(df, window_s=smooth)
    typer.echo(f"plot: {plot_timeline(df, out, title=video)}")


@app.command()
def export(
    directory: TimelinesArg,
    video: Annotated[Optional[str], typer.Option(help="Video id (default: the only one).")] = None,
    format: Annotated[str, typer.Option(help="csv (the timeline) | srt (emotion segments as subtitles).")] = "csv",
    out: Annotated[Optional[Path], typer.Option(help="File to write (default: standard output).")] = None,
    smooth: Annotated[Optional[float], typer.Option(help="Smooth with an EMA of this many seconds first.")] = None,
    min_duration: Annotated[float, typer.Option(help="srt: drop segments shorter than this (s).")] = 0.5,
) -> None:
    """Export one video's timeline as CSV, or its emotion segments as SRT subtitles."""
    from fer import timelines

    if format not in ("csv", "srt"):
        raise FerError(f"unknown --format {format!r}; choose csv or srt")
    video = _one_video(directory, video)
    df = timelines.read(directory, videos=video)
    if smooth:
        df = timelines.smooth(df, window_s=smooth)
    if format == "csv":
        text = df.to_csv(index=False)
    else:
        text = timelines.to_srt(timelines.segments(df, min_duration_s=min_duration))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"{format}: {out}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="train | label, followed by that command's arguments.")],
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
    working_dir: Annotated[Path, typer.Option(help="The fer project to upload with the job.")] = Path("."),
    pip: Annotated[
        bool, typer.Option(help="Install fer's dependencies on the cluster (off: the image has them).")
    ] = True,
    wait: Annotated[bool, typer.Option(help="Follow the logs until the job ends (Ctrl-C detaches).")] = True,
) -> None:
    """Submit `fer train` or `fer label` to a Ray cluster as a job."""
    from fer import submit as jobs
    from fer.submit import SubmitConfig

    config = SubmitConfig(
        address=_address(address), kind=kind, args=tuple(ctx.args), working_dir=str(working_dir), pip=pip
    )
    job_id = jobs.submit(config)
    typer.echo(f"submitted job {job_id}")
    if wait:
        status = jobs.follow(config.address, job_id)
        typer.echo(f"job {job_id}: {status}")
        if status != "SUCCEEDED":
            raise typer.Exit(1)


@jobs_app.command("status")
def jobs_status(job_id: str, address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None) -> None:
    """Print a job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from fer import submit as jobs

    typer.echo(jobs.status(_address(address), job_id))


@jobs_app.command("logs")
def jobs_logs(job_id: str, address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None) -> None:
    """Print a job's logs so far."""
    from fer import submit as jobs

    typer.echo(jobs.logs(_address(address), job_id), nl=False)


@jobs_app.command("stop")
def jobs_stop(job_id: str, address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None) -> None:
    """Stop a running job."""
    from fer import submit as jobs

    typer.echo("stopped" if jobs.stop(_address(address), job_id) else "not running")


def main() -> None:
    """Console entry point: user mistakes become one-line errors with exit status 2."""
    try:
        app()
    except FerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
