"""`emostream deploy`: candidates, promotion through a gate, rollback, the shadow report.

New versions (`emostream train`, `ensemble`, `deploy publish`) become the candidate: loaded next
to the served version and labelled `canary`, while `stable` stays where it was. `promote` moves
`stable` to the candidate once it is no worse on held-out data, then watches the served path and
moves it back if errors or latency cross a limit. All of it is TF Serving's model config file
(models/models.config by default), which TF Serving and the project's model server re-read every
second; labels only ever move between loaded versions, so no request fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emostream import model_repository as repository
from emostream.errors import EmostreamError
from emostream.model_repository import INPUT_SHAPE, ModelRepositoryError, numbered_versions
from emostream.settings import DEFAULT_REDIS_URL, OneLineParser
from emostream_trainer.serving_config import CANARY, STABLE, Roles, ServingConfigError, read_roles, write_roles

DEFAULT_CONFIG = Path("models/models.config")
DEFAULT_TARGET = "127.0.0.1:8500"
DEFAULT_CROPS = Path("runs/detector-crops")
LOAD_TIMEOUT_S = 300.0


class DeployError(EmostreamError, RuntimeError):
    """A deploy step that would leave serving in a bad state; nothing was changed."""


@dataclass(frozen=True)
class Place:
    """Where versions live and who serves them."""

    base: Path
    config: Path
    model_name: str = "emotion"
    target: str = DEFAULT_TARGET
    serving_base_path: str = ""
    """base_path written into a new config: the folder as the server sees it (default /models/<name>)."""


def roles(place: Place) -> Roles:
    """The model's roles; for a base path without a config, the newest version served alone."""
    try:
        found = read_roles(place.config, place.model_name)
    except ServingConfigError as error:
        raise DeployError(str(error)) from None
    if found is not None:
        return found
    versions = numbered_versions(place.base)
    newest = {STABLE: versions[-1]} if versions else {}
    return Roles(place.serving_base_path or f"/models/{place.model_name}", versions[-1:], newest)


def listing(place: Place) -> list[dict[str, Any]]:
    current = roles(place)
    rows = []
    for version in numbered_versions(place.base):
        info = repository.read_card(place.base / str(version))
        rows.append(
            {
                "version": version,
                "role": current.role(version),
                "validation_accuracy": info.get("validation_accuracy"),
                "gate": info.get("gate"),
                "labels": info.get("labels"),
                "code_revision": info.get("code_revision"),
            }
        )
    return rows


# Talking to the running server: optional, since deploying to a server that is down is just a file.


def _client(place: Place, label: str = "") -> Any:
    from emostream_serving.tf_serving import ServingClient

    return ServingClient(place.target, place.model_name, timeout_seconds=5.0, version_label=label)


def server_available(place: Place) -> list[int] | None:
    """Versions the running server has AVAILABLE, or None when no server answers at the target."""
    from emostream_serving.tf_serving import ServingError

    with _client(place) as client:
        try:
            return list(client.available_versions())
        except ServingError:
            return None


def wait_loaded(place: Place, version: int, timeout_s: float = LOAD_TIMEOUT_S) -> bool:
    """Wait until the server has `version` AVAILABLE; False when no server answers (nothing to wait for)."""
    deadline = time.monotonic() + timeout_s
    while True:
        available = server_available(place)
        if available is None:
            return False
        if version in available:
            return True
        if time.monotonic() > deadline:
            raise DeployError(
                f"version {version} did not become AVAILABLE at {place.target} within {timeout_s:.0f}s; "
                "see the model server's log"
            )
        time.sleep(0.2)


def wait_label(place: Place, label: str, version: int, timeout_s: float = 60.0) -> bool:
    """Wait until the server answers `label` with `version`; False when no server answers."""
    from emostream_serving.tf_serving import ServingError

    deadline = time.monotonic() + timeout_s
    with _client(place, label) as client:
        while True:
            try:
                if client.predict(np.zeros((1, *INPUT_SHAPE), np.uint8)).model_version == version:
                    return True
            except ServingError as error:
                if server_available(place) is None:
                    return False
                last = str(error)
            else:
                last = "another version answers"
            if time.monotonic() > deadline:
                raise DeployError(f"{place.target} does not answer '{label}' with version {version}: {last}")
            time.sleep(0.2)


def load_then_label(place: Place, current: Roles, version: int, label: str, keep: list[int]) -> Roles:
    """Make `version` carry `label`: first loaded (a config of its own), then labelled, as TF Serving
    only labels AVAILABLE versions. `keep`: the other versions to keep loaded."""
    if version not in current.loaded:
        loaded = sorted({*current.loaded, *keep, version})
        write_roles(place.config, place.model_name, Roles(current.base_path, loaded, dict(current.labels)))
    wait_loaded(place, version)  # also when listed already: a version that failed to load is never labelled
    labels = {**current.labels, label: version}
    result = Roles(current.base_path, sorted({*keep, *labels.values()}), labels)
    write_roles(place.config, place.model_name, result)
    return result


def add_candidate(place: Place, version: int) -> str:
    """Make a freshly exported `version` the candidate (or, with nothing served yet, the served one)."""
    current = roles(place)
    if current.stable is None or current.stable == version or not (place.base / str(current.stable)).is_dir():
        first = Roles(current.base_path, [version], {STABLE: version})
        write_roles(place.config, place.model_name, first)
        return f"version {version} is served (nothing was served before)"
    # The old candidate, if any, retires; the served version and its rollback target stay loaded.
    labels = {k: v for k, v in current.labels.items() if k != CANARY}
    keep = [v for v in current.loaded if v != current.canary]
    load_then_label(place, Roles(current.base_path, keep, labels), version, CANARY, keep)
    wait_label(place, CANARY, version)
    return (
        f"version {version} is the candidate (label '{CANARY}'); version {current.stable} stays served. "
        f"`emostream deploy shadow` compares them on live traffic; `emostream deploy promote` serves it"
    )


def publish(source: Path, place: Place) -> tuple[Path, str]:
    """Copy a SavedModel folder in (with its LiteRT copy compiled) as the next version and make it the candidate."""
    from emostream_trainer.litert_export import compiling

    final = repository.publish(place.base, compiling(repository.copy_from(source)))
    return final, add_candidate(place, int(final.name))


def compile_stale(place: Place) -> list[str]:
    """Compile every version whose LiteRT copy is missing or stale (`scripts/setup.sh` does, for the shipped ones)."""
    stale = [v for v in numbered_versions(place.base) if repository.litert_problem(place.base / str(v)) is not None]
    return [compile_litert(place, version) for version in stale] or ["every version has a current LiteRT copy"]


def compile_litert(place: Place, version: int) -> str:
    """(Re)write an existing version's LiteRT copy, for versions published without one."""
    from emostream_trainer.litert_export import CompileError, compile_version

    folder = repository.version_folder(place.base, version)
    if not (folder / repository.SAVED_MODEL_FILE).is_file():
        raise DeployError(f"{place.base}: no version {version}")
    try:
        found = compile_version(folder)
    except CompileError as error:
        raise DeployError(str(error)) from None
    differences = ", ".join(f"{precision} {difference:.1g}" for precision, difference in found.items())
    return f"compiled version {version} for LiteRT in {folder / 'assets.extra'} (largest differences: {differences})"


def retire(place: Place, version: int) -> Path:
    """Move an unloaded version into `<base>/.retired`, out of every server's sight; its number stays taken."""
    role = roles(place).role(version)
    if role != "retired":
        raise DeployError(f"version {version} is {role}: only a version no server loads can be retired")
    return repository.retire(place.base, version)


def gate(place: Place, served: int, candidate: int, args: argparse.Namespace) -> list[str]:
    """Run the gate; print one summary line per dataset; the regressions beyond tolerance."""
    from emostream_trainer.gate import Tolerances, compare, summary_line

    tolerances = Tolerances(args.tolerance_accuracy, args.tolerance_recall, args.tolerance_fear, args.tolerance_ece)
    recorded = repository.read_card(place.base / str(candidate)).get("validation")  # what it was trained against
    validation = args.validation or (Path(recorded) if recorded else None)
    if validation is None or not validation.is_dir():
        raise DeployError("the gate needs validation data: pass --validation DIR (class folders), or --force")
    datasets = [("validation", validation)]
    crops = args.crops or (DEFAULT_CROPS if DEFAULT_CROPS.is_dir() else None)
    if crops is not None:
        datasets.append(("detector crops", crops))
    else:
        print(f"gate: no detector crops ({DEFAULT_CROPS} missing; bench/detector_crops.py writes them)")
    worse: list[str] = []
    results = {}
    for name, data in datasets:
        comparison = compare(name, data, place.base / str(served), place.base / str(candidate), tolerances)
        print(f"gate: {summary_line(comparison)}")
        worse += comparison.worse
        results[name] = {"samples": comparison.samples, "accuracy": comparison.candidate["accuracy"]}
    _note_gate(place.base / str(candidate), served, results, worse)
    return worse


def _note_gate(folder: Path, served: int, results: dict[str, Any], worse: list[str]) -> None:
    """Keep the gate's verdict in the candidate's card, for `deploy list`."""
    path = folder / repository.ASSETS / repository.MODEL_CARD
    if path.is_file() and os.access(path, os.W_OK):
        verdict = {"against": served, **results, "worse": worse}
        repository.write_card(folder, {**repository.read_card(folder), "gate": verdict})


def promote(place: Place, version: int | None, args: argparse.Namespace) -> tuple[int, int]:
    """Serve `version` (default: the candidate) if the gate passes; (promoted, previous)."""
    current = roles(place)
    target = version if version is not None else current.canary
    if target is None:
        raise DeployError("no candidate to promote: train, ensemble or `deploy publish` one, or name a version")
    if not (place.base / str(target)).is_dir():
        raise DeployError(f"{place.base}: no version {target}")
    previous = current.stable
    if previous == target:
        raise DeployError(f"version {target} is already served")
    if previous is not None and not args.force:
        worse = gate(place, previous, target, args)
        if worse:
            raise DeployError(
                f"refused: version {target} is worse than served version {previous} beyond tolerance on "
                + "; ".join(worse)
                + " (--force promotes anyway)"
            )
    labels = {k: v for k, v in current.labels.items() if not (k == CANARY and v == target)}
    base = Roles(current.base_path, current.loaded, labels)
    keep = [v for v in [previous, *labels.values()] if v is not None]
    load_then_label(place, base, target, STABLE, keep)  # the old served version stays loaded for rollback
    wait_label(place, STABLE, target)
    return target, previous if previous is not None else target


def rollback(place: Place, to: int | None = None) -> tuple[int, int]:
    """Serve an earlier version again: `to`, else the one kept loaded, else the newest older one; (served, retired)."""
    current = roles(place)
    served = current.stable
    if served is None:
        raise DeployError(f"{place.config}: nothing is served, so there is nothing to roll back")
    standby = [v for v in current.loaded if v not in current.labels.values() and v != served]
    older = [v for v in numbered_versions(place.base) if v < served]
    target = to if to is not None else (max(standby) if standby else (older[-1] if older else None))
    if target is None:
        raise DeployError(f"{place.base}: no version before {served} to roll back to")
    if not (place.base / str(target)).is_dir():
        raise DeployError(f"{place.base}: no version {target}")
    moved = load_then_label(place, current, target, STABLE, list(current.labels.values()))
    wait_label(place, STABLE, target)
    # Only now that `stable` answers with the target does the rolled-back version unload.
    after = Roles(moved.base_path, sorted(set(moved.labels.values())), moved.labels)
    write_roles(place.config, place.model_name, after)
    return target, served


def auto_rollback_after_watch(place: Place, promoted: int, previous: int, args: argparse.Namespace) -> int:
    """Watch the served path after a promotion; roll back to `previous` on a breach. Exit code."""
    import redis

    from emostream_trainer.watch import WatchLimits, watch

    limits = WatchLimits(args.watch_s, args.max_error_rate, args.max_p99_ms, args.min_requests)
    print(
        f"watching version {promoted} for {limits.seconds:g} s (error rate <= {limits.max_error_rate:.1%}, "
        f"p99 <= {limits.max_p99_ms:g} ms); Ctrl-C ends the watch and keeps it served",
        flush=True,
    )
    client = redis.Redis.from_url(args.redis_url)
    try:
        reason = watch(client, args.served_label, limits, lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"watch ended by hand; version {promoted} stays served")
        return 0
    finally:
        client.close()
    if reason is None:
        print(f"watch passed: version {promoted} stays served")
        return 0
    served, _ = rollback(place, previous)
    print(f"rolled back automatically: version {promoted} {reason}; serving version {served} again", file=sys.stderr)
    return 3


def print_shadow(place: Place, redis_url: str, as_json: bool) -> int:
    import redis

    from emostream.model_stats import latest_shadow_keys, shadow_report
    from emostream.names import shadow_key

    client = redis.Redis.from_url(redis_url)
    try:
        current = roles(place)
        keys = latest_shadow_keys(client)
        if current.stable is not None and current.canary is not None:
            key = shadow_key(current.stable, current.canary)
        elif keys:
            key = keys[0]
        else:
            print("no shadow traffic recorded yet: is there a candidate, and do classifiers run with a shadow share?")
            return 1
        report = shadow_report(client, key)
    finally:
        client.close()
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(format_shadow(report))
    return 0


def format_shadow(report: dict[str, Any]) -> str:
    """The shadow report as a table: one row overall, one per camera, then the overall confusion."""
    header = (
        f"candidate {report['candidate_version']} shadowing served {report['served_version']}\n"
        f"{'scope':<16}{'faces':>7}{'agree':>8}{'conf served':>13}{'conf cand':>11}"
        f"{'p50/p99 served ms':>19}{'p50/p99 cand ms':>17}{'errors':>8}{'dropped':>9}"
    )
    rows = [header]
    scopes = [("overall", report["overall"]), *report["cameras"].items()]
    for name, s in scopes:
        agree = f"{s['agreement']:.1%}" if s["agreement"] is not None else "-"
        conf_served = f"{s['served_mean_confidence']:.3f}" if s["served_mean_confidence"] is not None else "-"
        conf_cand = f"{s['candidate_mean_confidence']:.3f}" if s["candidate_mean_confidence"] is not None else "-"
        served = f"{_ms(s['served_latency_ms_p50'])}/{_ms(s['served_latency_ms_p99'])}"
        cand = f"{_ms(s['candidate_latency_ms_p50'])}/{_ms(s['candidate_latency_ms_p99'])}"
        rows.append(
            f"{name[:15]:<16}{s['faces']:>7}{agree:>8}{conf_served:>13}{conf_cand:>11}{served:>19}{cand:>17}"
            f"{s['errors']:>8}{s['dropped']:>9}"
        )
    confusion = report["overall"]["confusion"]
    labels = sorted({*confusion, *(c for row in confusion.values() for c in row)})
    if labels:
        rows.append("confusion (rows: served label, columns: candidate label)")
        rows.append(" " * 10 + "".join(f"{label:>10}" for label in labels))
        for served_label in labels:
            counts = confusion.get(served_label, {})
            rows.append(f"{served_label:<10}" + "".join(f"{counts.get(c, 0):>10}" for c in labels))
    return "\n".join(rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def add_place_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-base", type=Path, default=Path("models/emotion"), help="version folders")
    parser.add_argument(
        "--model-config", type=Path, help="TF Serving model config file (default: models.config beside the base)"
    )
    parser.add_argument("--model-name", default="emotion")
    parser.add_argument(
        "--serving-target",
        default=os.environ.get("DEPLOY_SERVING_TARGET", DEFAULT_TARGET),
        help="the running model server (host:port), asked when a version has loaded",
    )


def place_of(args: argparse.Namespace) -> Place:
    config = args.model_config or args.model_base.parent / DEFAULT_CONFIG.name
    return Place(args.model_base, config, args.model_name, args.serving_target)


def add_candidate_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that export a version (train, ensemble): where it becomes the candidate."""
    parser.add_argument(
        "--model-config", type=Path, help="TF Serving model config file (default: models.config beside the base)"
    )
    parser.add_argument(
        "--serving-target",
        default=os.environ.get("DEPLOY_SERVING_TARGET", DEFAULT_TARGET),
        help="the running model server, asked when the new version has loaded",
    )


def announce_candidate(args: argparse.Namespace, final: Path, prog: str) -> int:
    """Make an exported version folder the candidate and say so; exit code."""
    config = args.model_config or args.model_base.parent / DEFAULT_CONFIG.name
    place = Place(args.model_base, config, "emotion", args.serving_target)
    try:
        # stderr: stdout stays the one JSON line scripts parse
        print(f"{prog}: {add_candidate(place, int(final.name))}", file=sys.stderr, flush=True)
    except (DeployError, ServingConfigError) as error:
        print(f"{prog}: exported {final}, but it is not the candidate: {error}", file=sys.stderr)
        return 2
    return 0


def _promote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", type=int, nargs="?", help="version to serve (default: the candidate)")
    parser.add_argument("--validation", type=Path, help="labelled class folders (default: the candidate's card)")
    parser.add_argument("--crops", type=Path, help=f"detector crops from the pipeline benchmark ({DEFAULT_CROPS})")
    parser.add_argument("--force", action="store_true", help="promote without the gate")
    parser.add_argument("--tolerance-accuracy", type=float, default=0.005)
    parser.add_argument("--tolerance-recall", type=float, default=0.02, help="per class, fear excepted")
    parser.add_argument("--tolerance-fear", type=float, default=0.01, help="fear recall")
    parser.add_argument("--tolerance-ece", type=float, default=0.01, help="expected calibration error")
    parser.add_argument("--watch-s", type=float, default=300.0, help="watch the served path this long (0: no)")
    parser.add_argument("--max-error-rate", type=float, default=0.05)
    parser.add_argument("--max-p99-ms", type=float, default=2000.0)
    parser.add_argument("--min-requests", type=int, default=20, help="requests needed before the watch judges")
    parser.add_argument("--served-label", default=STABLE, help="the label the classifiers ask for")


def main(argv: list[str]) -> int:
    parser = OneLineParser(
        prog="emostream deploy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_place_arguments(parser)
    parser.add_argument("--redis-url", default=os.environ.get("EMOSTREAM_REDIS_URL", DEFAULT_REDIS_URL))
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="versions with their role (served, candidate, previous, retired)")
    list_parser.add_argument("--json", action="store_true")
    publish_parser = commands.add_parser("publish", help="copy a SavedModel folder in as the candidate")
    publish_parser.add_argument("source", type=Path)
    _promote_arguments(commands.add_parser("promote", help="serve the candidate if it passes the gate, then watch"))
    compile_parser = commands.add_parser("compile", help="write a version's LiteRT copy (what the model server runs)")
    compile_parser.add_argument("version", type=int, nargs="?", help="default: every version without a current copy")
    retire_parser = commands.add_parser("retire", help="move a version no server loads into <base>/.retired")
    retire_parser.add_argument("version", type=int)
    rollback_parser = commands.add_parser("rollback", help="serve the previous version again")
    rollback_parser.add_argument("--to", type=int, help="version to serve (default: the previous one)")
    shadow_parser = commands.add_parser("shadow", help="how the candidate compares on live traffic")
    shadow_parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    place = place_of(args)
    import redis

    try:
        return run(args, place)
    except (DeployError, ModelRepositoryError, ServingConfigError) as error:
        print(f"emostream deploy: {error}", file=sys.stderr)
        return 2
    except redis.RedisError as error:  # the shadow report and the watch read the classifiers' counters
        print(f"emostream deploy: cannot read the classifiers' counters at {args.redis_url}: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, place: Place) -> int:
    from emostream_trainer.dataset import DatasetError

    if args.command == "list":
        rows = listing(place)
        print(json.dumps(rows, indent=2) if args.json else format_listing(rows))
    elif args.command == "publish":
        final, what = publish(args.source, place)
        print(f"published {final}: {what}")
    elif args.command == "promote":
        try:
            promoted, previous = promote(place, args.version, args)
        except (DatasetError, OSError) as error:
            raise DeployError(str(error)) from None
        print(f"serving version {promoted} (label '{STABLE}'); version {previous} stays loaded for rollback")
        if args.watch_s > 0 and promoted != previous and server_available(place) is not None:
            return auto_rollback_after_watch(place, promoted, previous, args)
    elif args.command == "compile":
        print("\n".join(compile_stale(place) if args.version is None else [compile_litert(place, args.version)]))
    elif args.command == "retire":
        print(f"retired version {args.version}: moved to {retire(place, args.version)}")
    elif args.command == "rollback":
        served, retired = rollback(place, args.to)
        print(f"serving version {served} again; version {retired} is retired (still on disk)")
    else:
        return print_shadow(place, args.redis_url, args.json)
    return 0


def _verdict(gate: dict[str, Any]) -> str:
    """The gate's last verdict in a few words: passed, or the first regression and how many more."""
    if not gate:
        return ""
    worse = gate.get("worse") or []
    if not worse:
        return f"passed against {gate.get('against')}"
    more = f" (+{len(worse) - 1} more)" if len(worse) > 1 else ""
    return f"refused against {gate.get('against')}: {worse[0]}{more}"


def format_listing(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'version':>7}  {'role':<10} {'validation':>10}  gate"]
    for row in rows:
        accuracy = f"{row['validation_accuracy']:.4f}" if row["validation_accuracy"] is not None else "-"
        verdict = _verdict(row["gate"] or {})
        lines.append(f"{row['version']:>7}  {row['role']:<10} {accuracy:>10}  {verdict}")
    return "\n".join(lines)


__all__ = ["DeployError", "Place", "add_candidate", "listing", "promote", "publish", "retire", "rollback"]
