"""``scandx listen`` (the DICOM node) and ``scandx pacs`` (the DICOMweb loop): argument
parsing and checks; the work is in ``hospital.node`` and ``hospital.pacs``."""

from __future__ import annotations

import argparse
import logging
import re
import signal
from pathlib import Path
from typing import Any

from scandx.errors import ScandxError

HOSPITAL_COMMANDS = ("listen", "pacs")
log = logging.getLogger("scandx.hospital")


def _common(p: Any) -> None:
    p.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="RUN",
        help="a trained run whose model is applied to each series it fits (repeatable)",
    )
    p.add_argument(
        "--state", required=True, metavar="DIR", help="state folder (kept across restarts)"
    )
    p.add_argument(
        "--retries", type=int, default=5, help="delivery attempts before dead-letter (5)"
    )
    p.add_argument("--retry-wait", type=float, default=30.0, help="first wait in s, doubled (30)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch", help="torch or onnx")
    p.add_argument(
        "--selector",
        metavar="JSON",
        help="series selector for every run (default: RUN/selector.json where present; "
        "without one, a model is tried on every series and its input checks decide)",
    )


def add_hospital_commands(sub: Any) -> None:
    listen = sub.add_parser(
        "listen",
        help="a DICOM node: receive studies (C-STORE), predict, send results to a PACS",
        description="Receive studies over DICOM (C-ECHO, C-STORE), run the models on each "
        "study once no instance has arrived for --idle seconds, and send the results "
        "(SR, SEG, SC) to --dest with C-STORE. Listens on 127.0.0.1 unless --host says "
        "otherwise; any other address needs --allow-aet.",
        epilog="example: scandx listen --aet SCANDX --port 11112 --run runs/ct "
        "--dest PACS@10.0.0.5:104 --allow-aet CT01 --state /var/lib/scandx",
    )
    listen.add_argument("--aet", default="SCANDX", help="this node's AE title (SCANDX)")
    listen.add_argument("--port", type=int, default=11112, help="DICOM port (11112)")
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    listen.add_argument("--dest", required=True, metavar="AET@HOST:PORT", help="where results go")
    listen.add_argument(
        "--allow-aet",
        action="append",
        default=[],
        metavar="AET",
        help="a calling AE title allowed to connect (repeatable); others are refused",
    )
    listen.add_argument(
        "--idle",
        type=float,
        default=30.0,
        help="seconds without an instance after which a study is complete (30)",
    )
    _common(listen)
    pacs = sub.add_parser(
        "pacs",
        help="a DICOMweb loop: find new studies (QIDO), predict, store results (STOW)",
        description="Poll a DICOMweb server: find studies not processed yet (QIDO-RS), "
        "retrieve them (WADO-RS), run the models and store the results back (STOW-RS).",
        epilog="example: scandx pacs --dicomweb http://pacs:8042/dicom-web --run runs/ct "
        "--state /var/lib/scandx-web --poll 60",
    )
    pacs.add_argument("--dicomweb", required=True, metavar="URL", help="DICOMweb base URL")
    pacs.add_argument("--poll", type=float, default=60.0, help="seconds between polls (60)")
    pacs.add_argument("--once", action="store_true", help="one pass, then exit")
    pacs.add_argument(
        "--since", default=None, metavar="YYYYMMDD", help="only studies dated on or after this day"
    )
    pacs.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="take a study once its instance count held this many seconds (0: at once)",
    )
    _common(pacs)


def _retry(args: argparse.Namespace) -> Any:
    from scandx.hospital.pipeline import RetryPolicy

    if args.retries < 1 or args.retry_wait < 0:
        raise ScandxError("--retries must be at least 1 and --retry-wait not negative")
    return RetryPolicy(max_attempts=args.retries, base_s=args.retry_wait)


def _check_runs(runs: list[str]) -> None:
    for run in runs:
        if not (Path(run) / "model" / "model.json").is_file():
            raise ScandxError("no trained model here (model/model.json missing)", run)


def _processor(args: argparse.Namespace) -> Any:
    from scandx.hospital.process import make_processor

    _check_runs(args.run)
    return make_processor(args.run, runtime=args.runtime, selector=args.selector)


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run_listen(args: argparse.Namespace) -> int:
    from scandx.hospital.dimse import Destination, check_aet
    from scandx.hospital.node import DicomNode, NodeConfig
    from scandx.serve.config import is_loopback

    if not 1 <= args.port <= 65535 or args.idle <= 0:
        raise ScandxError("--port must be 1-65535 and --idle positive")
    allowed = [check_aet(a, "--allow-aet") for a in args.allow_aet]
    if not allowed and not is_loopback(args.host):
        raise ScandxError(
            f"--host {args.host} is reachable from other machines: name the modalities "
            "allowed to send with --allow-aet AET"
        )
    config = NodeConfig(
        state_dir=Path(args.state),
        dest=Destination.parse(args.dest),
        aet=check_aet(args.aet, "--aet"),
        host=args.host,
        port=args.port,
        allow_aet=allowed,
        idle_s=args.idle,
        retry=_retry(args),
    )
    node = DicomNode(config, _processor(args))
    _stop_on_sigterm()
    try:
        node.serve_forever()
    except OSError as e:  # the port is taken, no permission for a port below 1024
        raise ScandxError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    return 0


def run_pacs(args: argparse.Namespace) -> int:
    from scandx.hospital.dicomweb import DicomWebClient
    from scandx.hospital.pacs import PacsConfig, PacsLoop

    if args.poll <= 0 or args.settle < 0:
        raise ScandxError("--poll must be positive and --settle not negative")
    if args.since is not None and not re.fullmatch(r"\d{8}", args.since):
        raise ScandxError(f"--since {args.since!r}: expected YYYYMMDD")
    config = PacsConfig(
        url=args.dicomweb,
        state_dir=Path(args.state),
        poll_s=args.poll,
        since=args.since,
        settle_s=args.settle,
        retry=_retry(args),
    )
    client = DicomWebClient(config.url)  # checks the URL before any model is loaded
    loop = PacsLoop(config, _processor(args), client)
    _stop_on_sigterm()
    try:
        loop.run(once=args.once)
    except KeyboardInterrupt:
        log.info("scandx pacs: stopping")
    finally:
        loop.close()
    return 0


def run_hospital_command(args: argparse.Namespace) -> int:
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # a line per instance is noise
    if args.command == "listen":
        return run_listen(args)
    return run_pacs(args)
