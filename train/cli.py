"""The ``train`` command line. Recipes land here as the training backends are built."""

from __future__ import annotations

import json

import click

from schemas.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="train")
def main() -> None:
    """Train models from token shards."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env(as_json: bool) -> None:
    """Show the torch build, accelerators and distributed settings training would use."""
    from train.environment import probe_environment

    info = probe_environment()
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
        return
    click.echo(f"python {info.python}, torch {info.torch} (CUDA build: {info.cuda_build})")
    click.echo(f"CPU threads: {info.cpu_threads}")
    if not info.devices:
        click.echo("accelerators: none (training runs on the CPU; fine for tiny models)")
    for d in info.devices:
        click.echo(f"cuda:{d.index} {d.name}, {d.memory_gib} GiB, sm {d.capability}, "
                   f"bf16 {'yes' if d.bf16 else 'no'}")
    if info.distributed:
        click.echo("distributed: " + ", ".join(f"{k}={v}" for k, v in info.distributed.items()))


if __name__ == "__main__":
    main()
