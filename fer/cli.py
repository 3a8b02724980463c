"""The ``fer`` command line: a thin layer that builds configs and calls the library."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json as _json
import shlex
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from fer._ray import cluster_address
from fer.aggregates import SUMMARY_BY
from fer.bundle import TTA
from fer.data.augment import AugmentConfig
from fer.errors import FerError
from fer.labels import EMOTIONS
from fer.plot import PLOT_BY
from fer.train.config import TrainConfig
from fer.validation import flag
from fer.video.pipeline import LabelConfig

#: The library's defaults, shown by the CLI (defined once, in the config dataclasses).
LABEL_DEFAULTS = LabelConfig(inputs=(), out="")
TRAIN_DEFAULTS = TrainConfig(data="", out="")
DATA_HELP = "Labelled faces: a FER+ root (fer2013new.csv beside FER2013Train/...), image folders or a FER-2013 CSV."

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Facial emotion recognition at archive scale: train models, label videos, query timelines.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect labelled-face datasets (FER+, FER-2013).")
app.add_typer(data_app, name="data")
jobs_app = typer.Typer(no_args_is_help=True, help="Follow and control jobs submitted to a Ray cluster.")
app.add_typer(jobs_app, name="jobs")


def _print_version(value: bool) -> None:
    if value:
        from fer.console import versions

        for name, version in versions().items():
            typer.echo(f"{name} {version}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print fer's version, the default model's id and the versions fer runs on.",
        ),
    ] = False,
) -> None:
    """Facial emotion recognition at archive scale: train models, label videos, query timelines."""


ADDRESS_HELP = "Ray job API address, e.g. http://127.0.0.1:8265 (default: RAY_ADDRESS)."


def _address(address: Optional[str]) -> str:
    import os

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise FerError("give the cluster's job API with --address http://HOST:8265 (or set RAY_ADDRESS)")
    return address


def _on_cluster(address: Optional[str], verbose: bool):
    """A query's context: on a cluster, Ray's output filed as in :func:`_quiet`; here, none."""
    from contextlib import nullcontext

    from fer import console

    return _quiet(console.user_logs(), f"query-{console.stamp()}", verbose) if address else nullcontext()


def _command_line() -> str:
    return shlex.join(["fer", *sys.argv[1:]])


RuntimeOpt = Annotated[str, typer.Option(help=LabelConfig.__dataclass_fields__["runtime"].metadata["help"])]
#: How uncropped photos' faces are found and cut (`fer data crop`, `fer evaluate --detect/--wild`): as fer label does.
DetectorOpt = Annotated[str, typer.Option(help="Uncropped photos: the face detector (as fer label's).")]
MinFaceOpt = Annotated[int, typer.Option(help="Uncropped photos: the smallest face (pixels).")]
AlignOpt = Annotated[bool, typer.Option(help="Uncropped photos: align crops on the eyes.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show Ray's and TensorFlow's own logs instead of filing them.")
]


#: Output switches, listed after a command's config options in its help.
LAST_OPTIONS = ("json", "verbose")


def config_options(*configs: type) -> Callable[[Callable], Callable]:
    """Give a command an option for every field of ``configs`` declared with a help text
    (:func:`fer.validation.option`): the field's type, default and help, defined once there.

    The options reach the command in its ``**settings``, after the parameters it declares
    itself (those win over a field of the same name; ``--json`` and ``--verbose`` are listed
    last). Modelled on sqlite-utils' commands over its library: the CLI maps flags onto the
    library's config, it does not restate it.
    """

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD]
        taken = {p.name for p in own}
        generated = []
        for config in configs:
            hints = typing.get_type_hints(config)
            for f in dataclasses.fields(config):
                if "help" in f.metadata and f.name not in taken:
                    option = typer.Option(help=f.metadata["help"])
                    generated.append(inspect.Parameter(
                        f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                        annotation=Annotated[hints[f.name], option],
                    ))  # fmt: skip
                    taken.add(f.name)

        @functools.wraps(command)
        def run(**params):
            return command(**params)

        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        last = [p for p in own if p.name in LAST_OPTIONS]
        parameters = [p for p in own if p.name not in LAST_OPTIONS] + generated + last
        run.__signature__ = inspect.Signature(parameters)
        return run

    return decorate


def _fields_of(config: type, values: dict) -> dict:
    """The entries of ``values`` that are fields of ``config``."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: v for k, v in values.items() if k in names}


@contextmanager
def _quiet(logs: str | Path, name: str, verbose: bool) -> Iterator:
    """Run a command's work with the frameworks' output in ``logs/<name>.log`` (a folder or
    an object-store URI: then written locally and uploaded after); yields the terminal's
    stderr for progress. Ray is shut down inside, so its last lines are filed too."""
    import tempfile

    from fer import console
    from fer.storage import Location

    where = Location.parse(logs) / f"{name}.log"
    local = Path(where.path) if where.is_local else Path(tempfile.mkdtemp(prefix="fer-logs-")) / where.name
    failed = False
    try:
        with console.quiet(None if verbose else local, verbose=verbose) as terminal:
            try:
                yield terminal
            finally:
                _shutdown_ray()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)  # typer then exits with status 130
        raise
    except FerError:
        raise
    except BaseException:
        failed = True
        raise
    finally:
        if local.is_file():
            if not where.is_local:
                where.write_bytes(local.read_bytes())
            if failed:
                typer.echo(f"the frameworks' log of this run: {where}", err=True)


def _shutdown_ray() -> None:
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


@data_app.command("stats")
def data_stats(
    root: Annotated[str, typer.Argument(help=DATA_HELP)],
    targets: Annotated[
        str, typer.Option(help="FER+ data: count faces by the arg-max of these targets (see fer train --targets).")
    ] = TRAIN_DEFAULTS.targets,
) -> None:
    """Print per-split, per-class image counts (and, for FER+, how many faces its votes keep)."""
    from fer.data import ferplus, sources
    from fer.evaluate import format_counts, format_vote_summary

    typer.echo(format_counts(sources.split_counts(root, targets)))
    if ferplus.is_ferplus(root):
        typer.echo("\n" + format_vote_summary(ferplus.vote_summary(root)))


@data_app.command("crop")
def data_crop(
    source: Annotated[
        str,
        typer.Argument(
            help="Uncropped labelled photos: a facial_expressions checkout (splits "
            "train and check, by person) or image folders ROOT/<split>/<class>/."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the crops into, as OUT/<split>/<class>/*.png.")],
    split: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Split to crop (repeat; default: train and check of "
            "a facial_expressions checkout, else train and val)."
        ),
    ] = None,
    detector: DetectorOpt = LABEL_DEFAULTS.detector,
    min_face: MinFaceOpt = LABEL_DEFAULTS.min_face,
    align: AlignOpt = LABEL_DEFAULTS.align,
) -> None:
    """Cut the largest face of each labelled photo as fer label does (detected, aligned, 48x48 grey),
    for fer train --extra and fer evaluate --wild.

    Example: fer data crop facial_expressions/ --out wild-crops/
    """
    from fer.crop import CropConfig, write_crops
    from fer.data import wild

    config = CropConfig.checked(detector, min_face, align)
    splits = split or list(wild.SPLITS if wild.is_wild(source) else ("train", "val"))

    def progress(name: str, done: int, total: int) -> None:
        if done % 1000 == 0 or done == total:
            typer.echo(f"{name}: {done}/{total} photos", err=True)

    done = write_crops(source, out, splits, config, progress)
    for name, row in done.items():
        typer.echo(f"{name}: faces found in {row['faces']} of {row['photos']} photos: "
                   + ", ".join(f"{k} {v}" for k, v in row["per_class"].items()))  # fmt: skip
    typer.echo(f"crops in {out}")


@app.command()
@config_options(TrainConfig, AugmentConfig)
def train(
    ctx: typer.Context,
    data: Annotated[Optional[str], typer.Option(help=DATA_HELP)] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Run directory: checkpoints and the final bundle (RUN_DIR/model).")
    ] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the interrupted run in this directory.")] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option(
            help=f"Epochs to train (default: {TRAIN_DEFAULTS.epochs}; with --resume: extend the run to this many)."
        ),
    ] = None,
    augment: Annotated[bool, typer.Option(help="Randomly augment every training image.")] = TRAIN_DEFAULTS.use_augment,
    verbose: VerboseOpt = False,
    **settings,
) -> None:
    """Train an emotion classifier on Ray Train and write a model bundle into RUN_DIR/model.

    Per-epoch figures go to stderr; Ray's and TensorFlow's logs to RUN_DIR/logs/.
    Example: fer train --data fer2013/ --out runs/small --arch small --epochs 10
    """
    from fer import console
    from fer.train import trainer

    if resume is not None:
        if not resume.is_dir():
            raise FerError(f"--resume: no such run directory {resume}")
        changes = _resume_changes(ctx, trainer.RESUMABLE)
        run_dir, work = resume, lambda: trainer.resume(resume, **changes)
    else:
        if data is None or out is None:
            raise FerError("fer train needs --data ROOT and --out RUN_DIR (or --resume RUN_DIR)")
        config = TrainConfig(
            **_fields_of(TrainConfig, settings),
            data=data,
            out=str(out),
            epochs=TRAIN_DEFAULTS.epochs if epochs is None else epochs,
            use_augment=augment,
            augment=AugmentConfig(**_fields_of(AugmentConfig, settings)),
            command=_command_line(),
        )
        trainer.check_extra(config)  # before the run's folder holds a log
        run_dir, work = out, lambda: trainer.start(config)
    with _quiet(run_dir / "logs", f"train-{console.stamp()}", verbose):
        result = work()
    typer.echo(f"model bundle: {result.bundle}")


def _resume_changes(ctx: typer.Context, allowed: tuple[str, ...]) -> dict:
    """The options given with ``--resume``: those a resumed run may change (``allowed``), by name.
    A resumed run keeps the settings it was started with: other options are refused, not ignored."""
    given = [p for p in ctx.command.params if getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"]
    changed = [p.opts[0] for p in given if p.name not in (*allowed, "resume", "verbose")]
    if changed:
        flags = ", ".join(flag(name) for name in allowed)
        raise FerError(
            f"--resume continues a run with the settings it was started with; {', '.join(changed)} cannot change "
            f"(only {flags} can)"
        )
    return {p.name: ctx.params[p.name] for p in given if p.name in allowed}


@app.command("bundle")
def bundle_command(
    sources: Annotated[
        list[Path],
        typer.Argument(help="A training run directory (finished, interrupted or running); with --ensemble, bundles."),
    ],
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory to write (default: RUN_DIR/model).")] = None,
    ensemble: Annotated[
        bool, typer.Option("--ensemble", help="Write one bundle that averages the bundles SOURCES... (needs --out).")
    ] = False,
    tta: Annotated[
        Optional[str],
        typer.Option(help="With --ensemble: each member's own TTA mode, one for all or one per member (a,b,...)."),
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="With --ensemble: the name recorded in the bundle.")] = None,
    average: Annotated[
        int, typer.Option(help="Average the weights of the run's N best checkpoints (scored on val afresh).")
    ] = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Write the model bundle of a training run's best checkpoint so far, or an ensemble of bundles.

    Examples: fer bundle training/deep-sgd
              fer bundle training/deep-sgd --average 5 --out runs/deep-swa
              fer bundle --ensemble runs/a/model runs/b/model --tta flip --out ens
    """
    from fer import bundle, console
    from fer.train.trainer import write_bundle

    if not ensemble:
        if tta or name:
            raise FerError("--tta and --name describe an ensemble: add --ensemble")
        if len(sources) != 1:
            raise FerError(f"RUN_DIR: one training run (or --ensemble BUNDLE...); got {len(sources)} paths")
        with _quiet(console.user_logs(), f"bundle-{console.stamp()}", verbose):
            written = write_bundle(sources[0], out, average=average)
        typer.echo(f"model bundle: {written}")
        return
    if average != 1:
        raise FerError("--average: averages one run's checkpoints; an --ensemble averages bundles' probabilities")
    if out is None:
        raise FerError("--ensemble: needs --out DIR, where the ensemble bundle is written")
    modes = tta.split(",") if tta else [None] * len(sources)
    if len(modes) == 1:
        modes *= len(sources)
    meta = {"name": name or "fer-ensemble", "architecture": "ensemble", "command": _command_line()}
    typer.echo(f"model bundle: {bundle.save_ensemble(sources, out, meta, tta=modes)}")


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(help=DATA_HELP)],
    model: Annotated[Optional[Path], typer.Option(help="Model bundle (default: the shipped model).")] = None,
    split: Annotated[
        Optional[str],
        typer.Option(help="Split to evaluate on (default: val; check for a facial_expressions checkout)."),
    ] = None,
    tta: Annotated[str, typer.Option(help=f"Test-time augmentation: {TTA.help()}.")] = "none",
    runtime: RuntimeOpt = LABEL_DEFAULTS.runtime,
    limit_per_class: Annotated[Optional[int], typer.Option(help="Use at most this many images per class.")] = None,
    detect: Annotated[
        bool,
        typer.Option(
            help="Images are uncropped: detect, align and crop the largest face first, as fer label does "
            "(always, for a facial_expressions checkout)."
        ),
    ] = False,
    detector: DetectorOpt = LABEL_DEFAULTS.detector,
    min_face: MinFaceOpt = LABEL_DEFAULTS.min_face,
    align: AlignOpt = LABEL_DEFAULTS.align,
    wild: Annotated[
        Optional[str],
        typer.Option(
            help="Also score the in-the-wild check: the whole check split of this facial_expressions checkout "
            "(muxspace/facial_expressions), its faces detected as with --detect."
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Print accuracy, macro-F1, per-class precision/recall and the confusion matrix.

    Ray's and TensorFlow's logs go to fer's log folder (~/.local/state/fer/logs/).

    Example: fer evaluate --data fer2013/ --split val --tta flip

    Example: fer evaluate --data ferplus/ --wild facial_expressions/
    """
    from fer import bundle, console
    from fer.crop import CropConfig
    from fer.data import ferplus
    from fer.data import wild as wild_data
    from fer.evaluate import evaluate as evaluate_split
    from fer.evaluate import evaluate_detected, evaluate_votes, format_detected, format_scores, format_vote_scores

    votes, checkout = ferplus.is_ferplus(data), wild_data.is_wild(data)
    detect = detect or checkout
    if detect and votes:
        raise FerError(f"--detect: {data} holds FER+'s cropped faces; --detect is for uncropped image folders")
    if wild is not None and not wild_data.is_wild(wild):
        raise FerError(f"--wild: {wild} is not a facial_expressions checkout (no data/legend.csv and images/)")
    TTA.get(tta)
    crops = CropConfig.checked(detector, min_face, align)
    if split is None:
        split = "check" if checkout else "val"
    elif checkout:
        wild_data.check_split(split)
    with _quiet(console.user_logs(), f"evaluate-{console.stamp()}", verbose):
        emotion_model = bundle.load(model, runtime=runtime)
        if votes:
            result = evaluate_votes(emotion_model, data, split, tta=tta, limit_per_class=limit_per_class)
        elif detect:
            result = evaluate_detected(emotion_model, data, split, crops, tta=tta, limit_per_class=limit_per_class)
        else:
            result = evaluate_split(emotion_model, data, split, tta=tta, limit_per_class=limit_per_class)
        in_wild = evaluate_detected(emotion_model, wild, "check", crops, tta=tta) if wild else None
    described = f"model {emotion_model.name} ({emotion_model.id}, {emotion_model.runtime})"
    if votes:
        typer.echo(f"{described} on FER+ {data} [{split}], tta={tta}\n\n{format_vote_scores(result)}")
    elif detect:
        typer.echo(f"{described} on {data} [{split}], tta={tta}\n{format_detected(result, crops)}")
    else:
        typer.echo(f"{described} on {data} [{split}], tta={tta}\n\n{format_scores(result)}")
    if in_wild is not None:
        typer.echo(f"\nin the wild: {wild} [check]\n{format_detected(in_wild, crops)}")
    if not votes:  # FER+'s report names its lowest recalls itself
        scores = result.scores if detect else result
        missing = ", ".join(name for name, n in zip(EMOTIONS, scores.support, strict=True) if n == 0)
        what = "no face of" if detect else "no images of"
        if missing:
            typer.echo(f"warning: {data} [{split}] has {what} {missing}: their recall is undefined", err=True)


@app.command()
def calibrate(
    model: Annotated[Path, typer.Argument(help="The bundle to calibrate (a single model or an ensemble).")],
    data: Annotated[str, typer.Option(help=f"{DATA_HELP} FER+ faces are fitted on their majority.")],
    out: Annotated[Path, typer.Option(help="Where the calibrated bundle is written.")],
    split: Annotated[str, typer.Option(help="Split to fit on: the one the model was selected on.")] = "val",
    tta: Annotated[str, typer.Option(help=f"The TTA the model will run with: {TTA.help()}.")] = "none",
    runtime: RuntimeOpt = LABEL_DEFAULTS.runtime,
    min_recall: Annotated[
        float, typer.Option(help="Then raise the offsets of classes whose recall is below this (0: none).")
    ] = 0.0,
    fer2013_min_recall: Annotated[
        float,
        typer.Option(
            help="FER+ roots: a recall floor against FER-2013's labels of the same faces, held too (0: none)."
        ),
    ] = 0.0,
    verbose: VerboseOpt = False,
) -> None:
    """Fit per-class offsets on a bundle's log-probabilities (maximum likelihood on a labelled
    split, then raised to a recall floor if asked) and write the calibrated copy: the figures
    before, after and cross-validated (on a FER+ root, after against FER-2013's labels too).

    Example: fer calibrate runs/deep/model --data fer2013/ --out runs/deep-cal --min-recall 0.55
    """
    from fer import console
    from fer.calibrate import calibrate as calibrate_bundle
    from fer.evaluate import format_scores, lowest_recall

    TTA.get(tta)
    with _quiet(console.user_logs(), f"calibrate-{console.stamp()}", verbose):
        result = calibrate_bundle(model, data, out, split=split, tta=tta, runtime=runtime, min_recall=min_recall,
                                  fer2013_min_recall=fer2013_min_recall)  # fmt: skip
    offsets = ", ".join(f"{name} {b:+.2f}" for name, b in zip(EMOTIONS, result.bias, strict=True))
    typer.echo(f"class offsets (log-probability): {offsets}\n")
    rows = [
        ("before", result.before),
        ("after (fitted on these faces)", result.after),
        ("after, cross-validated (fitted on the other half)", result.cross_validated),
    ]
    if result.fer2013 is not None:
        rows.append(("after, against FER-2013's labels", result.fer2013))
    for title, scores in rows:
        low = lowest_recall(scores)
        typer.echo(f"{title}: accuracy {scores.accuracy:.4f}, macro-F1 {scores.macro_f1:.4f}, "
                   f"lowest recall {scores.recall[low]:.3f} ({EMOTIONS[low]})")  # fmt: skip
    typer.echo(f"\n{format_scores(result.after)}\nmodel bundle: {result.path}")
    low = lowest_recall(result.after)
    if result.after.recall[low] < min_recall:
        typer.echo(f"warning: --min-recall {min_recall:g} is out of reach on these faces: {EMOTIONS[low]}'s recall "
                   f"stays {result.after.recall[low]:.2f}", err=True)  # fmt: skip


@app.command()
@config_options(LabelConfig)
def label(
    inputs: Annotated[
        list[str], typer.Argument(help="Video or image files, folders (searched recursively) or .txt lists of paths.")
    ],
    out: Annotated[
        str,
        typer.Option(help="Output folder or URI (s3://bucket/prefix): timelines/*.parquet and manifest/*.json."),
    ],
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: VerboseOpt = False,
    **settings,
) -> None:
    """Label videos and images: per-frame, per-face emotion timelines as Parquet, one file per video.

    Progress goes to stderr, the summary to stdout; Ray's and TensorFlow's logs and the
    run's record go to OUT/logs/.
    Example: fer label clips/ --out out --fps 5
    """
    from fer import console
    from fer.schema import LOGS_DIR
    from fer.storage import Location
    from fer.video.inputs import resolve_inputs
    from fer.video.pipeline import InternalError, Interrupted, OutputFault, run

    config = LabelConfig(inputs=tuple(inputs), out=out, **settings, command=_command_line())
    videos = resolve_inputs(config.inputs)  # a missing input is an error before anything is written
    name = console.stamp()
    try:
        with _quiet(str(Location.parse(out) / LOGS_DIR), f"run-{name}", verbose) as terminal:
            summary = run(config, progress=terminal, run_name=name, videos=videos)
    except (Interrupted, OutputFault, InternalError) as exc:
        # What was saved before the stop, then the reason (main prints it and sets the exit status).
        typer.echo(_json.dumps(exc.summary.to_dict(), indent=1) if json else format_label_summary(exc.summary))
        if not isinstance(exc, InternalError):
            left = exc.summary.count("interrupted")
            typer.echo(f"stopped with {left} video(s) left; the same command continues the run", err=True)
        raise
    typer.echo(_json.dumps(summary.to_dict(), indent=1) if json else format_label_summary(summary))
    if summary.count("failed") or summary.count("partial"):
        raise typer.Exit(1)


def format_label_summary(summary) -> str:
    """The end-of-run table: one line per video (the path as given), then totals."""
    from fer.schema import TIMELINES_DIR

    width = min(60, max([len("video"), *(len(e.path) for e in summary.entries)]) + 2)
    lines = [f"{'video':<{width}}{'status':<9}{'frames':>8}{'faces':>8}{'video s':>9}  reason"]
    for e in summary.entries:
        path = e.path if len(e.path) < width - 1 else "..." + e.path[-(width - 5) :]
        lines.append(f"{path:<{width}}{e.status:<9}{e.frames:>8}{e.faces:>8}{e.seconds:>9.1f}  {e.reason}")
    left = f", {summary.count('interrupted')} not finished" if summary.count("interrupted") else ""
    partial = f"{summary.count('partial')} partial, " if summary.count("partial") else ""
    whole, after = summary.rates()
    speed = [f"{whole:.1f} frames/s"] if whole is not None else []
    if after is not None:
        speed.append(f"{after:.1f} after {summary.startup_s:.1f} s of start-up")
    rate = f" ({'; '.join(speed)})" if speed else ""
    lines.append(
        f"{len(summary.entries)} videos: {summary.count('done')} done, {partial}{summary.count('skipped')} skipped, "
        f"{summary.count('failed')} failed{left}; {summary.frames} sampled frames, {summary.faces} faces labelled in "
        f"{summary.seconds:.1f} s{rate}; timelines in {summary.out / TIMELINES_DIR}"
    )
    return "\n".join(lines)


# The timelines argument of summary, plot and export.
TimelinesArg = Annotated[str, typer.Argument(help="A fer label output (folder or URI), its timelines/, or one file.")]


OUTPUT_FORMATS = ("table", "csv", "json", "parquet")
# Options shared by the archive queries (summary, query).
FormatOpt = Annotated[str, typer.Option(help=f"{' | '.join(OUTPUT_FORMATS)}.")]
OutOpt = Annotated[Optional[Path], typer.Option(help="File to write (default: standard output).")]
ClusterOpt = Annotated[
    Optional[str], typer.Option(help="Ray cluster to run the query on (default: RAY_ADDRESS, else here).")
]


def _write_out(out: Path, write) -> None:
    """Run ``write`` for the file ``out``, its folder made first; a refusal is one line."""
    from fer.errors import EnvironmentFault

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        raise EnvironmentFault(f"--out: cannot write {out}: {exc.strerror or exc}") from None


def _emit(table, format: str, out: Optional[Path], *, shown=None) -> None:
    """Write a result table as ``format`` to ``out`` (or standard output; parquet needs ``out``)."""
    if format not in OUTPUT_FORMATS:
        raise FerError(f"--format: unknown format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if format == "parquet":
        if out is None:
            raise FerError("--format parquet needs --out FILE")
        _write_out(out, lambda: table.to_parquet(out, index=False))
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
        _write_out(out, lambda: out.write_text(text))
        typer.echo(f"{format}: {out} ({len(table)} rows)")


def _table_view(table):
    """The summary as a table for people: videos by their paths, shares only, named by emotion."""
    shown = table.drop(columns=[c for c in table.columns if c.startswith("mean_") or c == "video_id"])
    shown.columns = [c.removeprefix("share_") for c in shown.columns]
    if "dominant" in shown:  # a video (or shot) without faces has no dominant emotion: say so in words
        shown["dominant"] = shown["dominant"].astype(object).where(shown["dominant"].notna(), "none")
    return shown.rename(columns={"video_path": "video"})


@app.command()
def summary(
    directory: TimelinesArg,
    video: Annotated[
        Optional[list[str]], typer.Option(help="Videos to summarise: id, file name or path (default: all).")
    ] = None,
    by: Annotated[str, typer.Option(help=" | ".join(SUMMARY_BY) + ".")] = "video",
    format: FormatOpt = "table",
    out: OutOpt = None,
    address: ClusterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Time-weighted emotion shares, dominant emotion and face presence per video, shot, face or person.

    Reads the per-video aggregates fer label writes, so it is quick on any archive size.
    Example: fer summary out --by face --format csv
    """
    from fer import timelines

    address = cluster_address(address)
    with _on_cluster(address, verbose):
        table = timelines.summary(directory, videos=video, by=by, address=address)
    table = timelines.with_paths(table, directory)
    _emit(table, format, out, shown=_table_view(table))


@app.command()
def query(
    directory: TimelinesArg,
    where: Annotated[
        Optional[str],
        typer.Option(help="SQL condition on timeline rows, e.g. \"emotion = 'happy' AND confidence > 0.8\"."),
    ] = None,
    columns: Annotated[Optional[str], typer.Option(help="Comma-separated columns to return (default: all).")] = None,
    video: Annotated[Optional[list[str]], typer.Option(help="Only these videos: id, file name or path.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many rows.")] = None,
    top_videos: Annotated[
        Optional[int], typer.Option(help="Instead: the N videos with the largest share of --emotion.")
    ] = None,
    emotion: Annotated[str, typer.Option(help="The emotion --top-videos ranks by.")] = "happy",
    minutes: Annotated[
        bool, typer.Option(help="Instead: minutes of each emotion per video (or --by shot | face).")
    ] = False,
    by: Annotated[str, typer.Option(help="With --minutes: " + " | ".join(SUMMARY_BY) + ".")] = "video",
    format: FormatOpt = "table",
    out: OutOpt = None,
    address: ClusterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Query a whole archive: rows matching a condition, top videos by an emotion, emotion minutes.

    Example: fer query out --where "emotion = 'fear' AND confidence > 0.7" --columns video_id,time_s,fear
    """
    from fer import timelines

    address = cluster_address(address)
    with _on_cluster(address, verbose):
        if top_videos is not None:
            table = timelines.with_paths(
                timelines.top_videos(directory, emotion, top_videos, address=address), directory
            )
            shown = _table_view(table)
        elif minutes:
            table, shown = timelines.emotion_minutes(directory, by=by, address=address), None
        else:
            cols = [c.strip() for c in columns.split(",")] if columns else None
            table, shown = timelines.scan(directory, where, cols, videos=video, limit=limit, address=address), None
    _emit(table, format, out, shown=shown)


@app.command()
def plot(
    directory: TimelinesArg,
    out: Annotated[Path, typer.Option(help="Image file to write (.png, .svg, .pdf).")],
    video: Annotated[Optional[str], typer.Option(help="Video: id, file name or path (default: the only one).")] = None,
    face: Annotated[Optional[int], typer.Option(help="Plot only this face.")] = None,
    smooth: Annotated[Optional[float], typer.Option(help="Smooth with an EMA of this many seconds.")] = None,
    by: Annotated[
        str, typer.Option(help=" | ".join(PLOT_BY) + ": a panel per face, or per person (its faces across cuts).")
    ] = "face",
) -> None:
    """Plot the emotion probabilities over time, one panel per face or per person."""
    from fer import timelines
    from fer.plot import plot_timeline

    video = timelines.one_video(directory, video)
    df = timelines.read(directory, videos=video, faces=face)
    if smooth:
        df = timelines.smooth(df, window_s=smooth)
    typer.echo(f"plot: {plot_timeline(df, out, title=video, by=by)}")


@app.command()
def export(
    directory: TimelinesArg,
    video: Annotated[Optional[str], typer.Option(help="Video: id, file name or path (default: the only one).")] = None,
    format: Annotated[str, typer.Option(help="csv (the timeline) | srt (emotion episodes as subtitles).")] = "csv",
    out: Annotated[Optional[Path], typer.Option(help="File to write (default: standard output).")] = None,
    smooth: Annotated[Optional[float], typer.Option(help="Smooth with an EMA of this many seconds first.")] = None,
    min_duration: Annotated[float, typer.Option(help="srt: drop episodes shorter than this (s).")] = 0.5,
) -> None:
    """Export one video's timeline as CSV, or its emotion episodes as SRT subtitles."""
    from fer import timelines

    if format not in ("csv", "srt"):
        raise FerError(f"unknown --format {format!r}; choose csv or srt")
    video = timelines.one_video(directory, video)
    df = timelines.read(directory, videos=video)
    if smooth:
        df = timelines.smooth(df, window_s=smooth)
    if format == "csv":
        text = df.to_csv(index=False)
    else:
        text = timelines.to_srt(timelines.episodes(df, min_duration_s=min_duration))
    if out is None:
        typer.echo(text, nl=False)
    else:
        _write_out(out, lambda: out.write_text(text))
        typer.echo(f"{format}: {out}")


@app.command()
def check(
    directory: Annotated[str, typer.Argument(help="A fer label output (folder or URI).")],
    repair: Annotated[
        bool, typer.Option(help="Remove orphans and temporary files; drop entries of lost timelines.")
    ] = False,
    compact: Annotated[bool, typer.Option(help="Merge the archive index's files into one first.")] = False,
) -> None:
    """Check that a label output's timelines agree with its manifest (exit 1 when they do not),
    and its archive index with its per-video aggregates.

    Example: fer check out --repair
    """
    from fer.check import check as run

    report = run(directory, repair=repair, compact=compact)
    typer.echo("\n".join(report.lines()))
    if not (report.consistent or report.repaired):
        raise typer.Exit(1)


@app.command()
def people(
    directory: Annotated[str, typer.Argument(help="A fer label output (folder or URI).")],
    photos: Annotated[Optional[list[str]], typer.Argument(help="With --enrol: photos of that person.")] = None,
    enrol: Annotated[Optional[str], typer.Option(help="Name the person in PHOTOS... (then update).")] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="Where photos' faces are described: auto (on Ray when a cluster is named, else here), ray or process."
        ),
    ] = "auto",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS).")] = None,
    format: FormatOpt = "table",
    out: OutOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Join the persons of every video into archive-wide identities (p0, p1, ...) in OUT/people/.

    Incremental: identities keep their ids as videos are added. Queries then know each row's identity
    and name. Example: fer people out; fer people out --enrol "Ann Lee" ann1.jpg ann2.jpg
    """
    from fer import console
    from fer import people as archive
    from fer._ray import ENGINES
    from fer.validation import Options
    from fer.validation import check as check_option

    check_option("engine", engine, Options(ENGINES))
    if enrol is not None:
        if not photos:
            raise FerError(f"--enrol {enrol}: give the photos of {enrol} after the output folder")
        found = archive.enrol(directory, enrol, photos)
        typer.echo(f"enrolled {enrol}: a face in {found} of {len(photos)} photo(s)", err=True)
    elif photos:
        raise FerError(f"unexpected arguments {' '.join(photos)} (photos go with --enrol NAME)")
    with _quiet(console.user_logs(), f"people-{console.stamp()}", verbose):  # Ray's lines, when on Ray
        report = archive.update(directory, engine=engine, address=address)
    if report.described or report.unread:
        where = "on Ray" if report.on_ray else "here"
        unread = (f"; {report.unread} left out: their photos cannot be read {where}, or changed since labelled "
                  "(a relative path is read from this folder)") if report.unread else ""  # fmt: skip
        typer.echo(f"described the faces of photos {where}: {report.described} persons{unread}", err=True)
    typer.echo(f"{report.identities} identities ({report.named} named); {report.new} new, {report.joined} persons "
               f"joined one, {report.merged} merged, {report.left} left with their videos", err=True)  # fmt: skip
    table = report.table.drop(columns="descriptor")
    _emit(table, format, out, shown=table.fillna({"name": "", "picture": ""}))


@app.command()
def render(
    directory: TimelinesArg,
    out: Annotated[Path, typer.Option(help="MP4 file to write.")],
    video: Annotated[Optional[str], typer.Option(help="Video: id, file name or path (default: the only one).")] = None,
    source: Annotated[
        Optional[str], typer.Option(help="The video file, if it is no longer where it was labelled.")
    ] = None,
    smooth: Annotated[float, typer.Option(help="Smooth emotions with an EMA of this many seconds (0: raw).")] = 0.5,
) -> None:
    """Draw each face's box, id and emotions over the video: check the labels by eye.

    Example: fer render out --video interview.mp4 --out check.mp4
    """
    from fer.render import render as draw

    result = draw(directory, out, video=video, source=source, smooth_s=smooth)
    typer.echo(f"video: {result.out} ({result.frames} frames, {result.boxes} face boxes drawn)")


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


#: What help shows for a value, by Python type (typer's default shows the type: "<int>").
_METAVARS = {"int": "N", "float": "NUM", "Path": "PATH", "str": "TEXT", "list[str]": "TEXT", "bool": ""}


def _plain_help(command) -> None:
    """Help that reads like a man page (``--fps NUM``, ``INPUTS...``, flags bare), not
    typer's Python types (``<float>``, ``<list[str]>``, ``{inputs}``)."""
    import click

    help_option = command.get_help_option(click.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if param.param_type_name == "argument":
            name = param.name.upper() + ("..." if param.nargs != 1 else "")
            param.metavar = name
            # typer 0.29 shows an argument's type beside its name and braces it in the usage line.
            param.display_type_rich = lambda ctx: None
            param._usage_display_name = lambda name=name: name
        elif param.metavar is None:
            param.metavar = _METAVARS.get(param.bare_type(), param.name.upper())
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


def reference(width: int = 100) -> str:
    """Every command's ``--help`` as Markdown, plain and ``width`` columns wide whatever the
    terminal: the CLI reference of the docs (``cog -r docs/cli.md`` writes it there)."""
    import click

    def pages(command, ctx: click.Context):
        command.rich_markup_mode = None  # click's plain formatter: the same text on every machine
        yield ctx.command_path, command.get_help(ctx)
        for name, sub in getattr(command, "commands", {}).items():
            yield from pages(sub, click.Context(sub, info_name=name, parent=ctx, terminal_width=width))

    root = typer.main.get_command(app)
    _plain_help(root)
    ctx = click.Context(root, info_name="fer", terminal_width=width, max_content_width=width)
    return "".join(f"\n## `{path}`\n\n```text\n{text}\n```\n" for path, text in pages(root, ctx))


#: Exit status of a crash (a bug): sysexits.h's EX_SOFTWARE, apart from 1 (some inputs failed).
CRASHED = 70


def main() -> None:
    """Console entry point: user mistakes and environment faults become one-line errors (exit
    status 2 and 3), Ctrl-C exits 130 and a crash 70; see the README's exit statuses."""
    from fer import _ray

    _ray.OWNS_PROCESS = True
    try:
        command = typer.main.get_command(app)
        _plain_help(command)
        command(prog_name="fer")
    except FerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception:  # a bug: keep its traceback, and an exit status no user mistake shares
        import traceback

        traceback.print_exc()
        typer.echo("error: fer crashed: this is a bug, not a problem with your input; please report it", err=True)
        sys.exit(CRASHED)


if __name__ == "__main__":
    main()
