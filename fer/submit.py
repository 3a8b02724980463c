"""Submit fer's jobs to a Ray cluster and follow them (Ray's job submission API).

The working directory (the project: ``fer/``, ``jobs/``) is uploaded with the job, and the
runtime environment installs fer's dependencies on the cluster (``pip``), unless the
cluster's image has them already (``pip=False``). With token authentication
(``RAY_AUTH_MODE=token``), Ray's client sends the token from ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fer._ray import TF_ENV
from fer.errors import FerError

JOB_KINDS = ("train", "label")
#: Not uploaded with a job: history, local outputs, training runs, build leftovers.
EXCLUDES = [".git", "runs/", "out/", "training/", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"]
#: What the Ray image ships already, so the runtime env does not reinstall it.
IN_RAY_IMAGE = ("ray", "numpy", "pandas", "pyarrow")


@dataclass(frozen=True)
class SubmitConfig:
    """One job submission: ``kind`` (train | label) with the CLI arguments ``args``."""

    address: str
    kind: str
    args: tuple[str, ...]
    working_dir: str = "."
    pip: bool = True

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise FerError(f"unknown job {self.kind!r}; submit one of {', '.join(JOB_KINDS)}")
        if not (Path(self.working_dir) / "jobs" / f"{self.kind}.py").is_file():
            raise FerError(f"{Path(self.working_dir).resolve()} is not the fer project (no jobs/{self.kind}.py)")


def requirements(project: Path) -> list[str]:
    """fer's dependencies from ``pyproject.toml``, less what the Ray image ships."""
    deps = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if d.split(">")[0].split("[")[0].split("=")[0].strip() not in IN_RAY_IMAGE]


def runtime_env(config: SubmitConfig) -> dict:
    env: dict = {
        "working_dir": config.working_dir,
        "excludes": EXCLUDES,
        "env_vars": dict(TF_ENV),
    }
    if config.pip:
        env["pip"] = requirements(Path(config.working_dir))
    return env


def client(address: str):
    """A job submission client, with a one-line error when the cluster cannot be reached."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError:
        raise FerError(
            f"--address {address}: the cluster requires a token; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
            "(or RAY_AUTH_TOKEN_PATH) to the cluster's token"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FerError(f"cannot reach the Ray job API at {address}: {str(exc).splitlines()[0]}") from None


def submit(config: SubmitConfig, *, agent_wait_s: float = 60.0) -> str:
    """Submit a job; return its id.

    A cluster that has just started answers "no available agent" until its job agent is
    up: that is retried for ``agent_wait_s``.
    """
    entrypoint = shlex.join(["python", f"jobs/{config.kind}.py", *config.args])
    jobs = client(config.address)
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            return jobs.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(config))
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise FerError(f"job submission to {config.address} failed: {str(exc).splitlines()[0]}") from None
            time.sleep(2)


def follow(address: str, job_id: str) -> str:
    """Print the job's logs until it ends (Ctrl-C detaches, the job goes on); return its status."""
    jobs = client(address)

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        sys.stderr.write(f"\ndetached; the job goes on: fer jobs status {job_id} --address {address}\n")
    return str(jobs.get_job_status(job_id))


def status(address: str, job_id: str) -> str:
    try:
        return str(client(address).get_job_status(job_id))
    except RuntimeError as exc:
        raise FerError(f"job {job_id}: {str(exc).splitlines()[0]}") from None


def logs(address: str, job_id: str) -> str:
    try:
        return client(address).get_job_logs(job_id)
    except RuntimeError as exc:
        raise FerError(f"job {job_id}: {str(exc).splitlines()[0]}") from None


def stop(address: str, job_id: str) -> bool:
    try:
        return client(address).stop_job(job_id)
    except RuntimeError as exc:
        raise FerError(f"job {job_id}: {str(exc).splitlines()[0]}") from None
