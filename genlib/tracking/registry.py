"""Model registry: register versions under ``genlib-<model>-<dataset>``, gate and move aliases, list.

A version carries a few readable tags first (``gates``: the gates' status; ``metric.<name>`` for its
headline metrics; ``weights``: which epoch's weights it holds), then the machine's: ``genlib.model``,
``genlib.dataset_digest``, ``genlib.eval_run_id``, ``genlib.git_commit`` and ``genlib.gates``, the gate
object with the metrics it read (so gates can be re-checked at ``promote`` time from the registry alone; see
:mod:`genlib.tracking.version_notes`). Its markdown description says why it is or is not champion, which
epoch's weights it holds, its gates as a table, its headline metrics and its pictures.
``challenger`` always points at the newest registration; ``champion`` moves only when the version
passes its gates and beats the current champion. Both moves are compare-and-set under the model's
registry lock (:mod:`genlib.tracking.locks`), so concurrent pipelines cannot lose an improvement.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from genlib.tracking.errors import GateFailedError, RegistryError
from genlib.tracking.gates import GateResult, beats, check_gates, first_failure
from genlib.tracking.locks import registry_lock
from genlib.tracking import tags as T
from genlib.tracking.version_notes import (  # noqa: F401  (git_commit, metric tags: re-exported)
    GATES_TAG,
    METRIC_TAG,
    gate_evidence,
    gates_label,
    git_commit,
    metric_tags,
    metrics_from_tags,
    gates_tag,
    read_gates,
)
from genlib.tracking.version_page import (
    describe as _describe,
    dethroned_description,
    promotion_description,
    registration_description,
    weights_epochs,
    weights_label,
)

NAME_PREFIX = "genlib-"
CHAMPION, CHALLENGER = "champion", "challenger"
_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")


def registered_model_name(model_name: str, dataset: str) -> str:
    """``genlib-<model>-<dataset>``, e.g. ``genlib-vae-digits``."""
    return f"{NAME_PREFIX}{model_name}-{Path(dataset).name}"


class Registration(BaseModel):
    """What ``register_version`` did: the version, its aliases after the call, why champion moved or not,
    and every gate's check. The flows return it as it is (a pydantic model, persisted as JSON)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    aliases: tuple[str, ...]
    promoted: bool
    reason: str
    gates: tuple[GateResult, ...] = ()
    created: bool = True  # False when this run's model was already registered (a cached re-run)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed_gate(self) -> str | None:
        """The first gate that failed, or None when all passed."""
        failed = first_failure(list(self.gates))
        return failed.gate if failed else None


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _is_missing(err: Exception) -> bool:
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(err).lower()


def _get_registered_model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if _is_missing(err):
            known = [m.name for m in client.search_registered_models(f"name LIKE '{NAME_PREFIX}%'")]
            hint = f"; registered: {', '.join(sorted(known))}" if known else "; nothing is registered yet"
            raise RegistryError(f"no registered model {name!r}{hint}") from None
        raise


def resolve_version(name: str, version: str | int, client: Any = None) -> Any:
    """The ModelVersion ``version`` of ``name``: a number, or an alias such as ``champion``."""
    from mlflow.exceptions import MlflowException

    client = client or _client()
    model = _get_registered_model(client, name)
    text = str(version).lstrip("@")
    if text.isdigit():
        try:
            return client.get_model_version(name, text)
        except MlflowException as err:
            if _is_missing(err):
                versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
                raise RegistryError(f"{name} has no version {text}; versions: "
                                    f"{', '.join(map(str, versions)) or 'none'}") from None
            raise
    aliases = dict(getattr(model, "aliases", {}) or {})
    if text not in aliases:
        known = ", ".join(f"@{a}" for a in sorted(aliases)) or "none"
        raise RegistryError(f"{name} has no alias @{text}; aliases: {known}")
    return client.get_model_version(name, str(aliases[text]))


def _find_version_for_run(client: Any, name: str, run_id: str) -> Any | None:
    for mv in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        return mv
    return None


def register_version(model_uri: str, run_id: str, model_name: str, dataset: str, dataset_digest: str,
                     metrics: Mapping[str, float], *, commit: str | None = None,
                     extra_tags: Mapping[str, str] | None = None) -> Registration:
    """Register the model at ``model_uri`` (logged by run ``run_id``), set ``challenger``, maybe ``champion``.

    Idempotent per run: when this run's model is already a version, that version is reused (a cached
    pipeline re-run does not add versions). ``champion`` moves only when every gate passes and the
    version beats the current champion on the family's primary metric.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    name = registered_model_name(model_name, dataset)
    gate_results = check_gates(model_name, metrics)
    # Readable tags first: MLflow's versions table lists a version's tags in the order they were set.
    tags = {T.GATES_STATUS: gates_label(read_gates({GATES_TAG: gates_tag(gate_results)}))}
    measured = metric_tags(metrics, model_name)
    tags.update({k: v for k, v in measured.items() if k != GATES_TAG})
    epochs = weights_epochs(_source_tags(client, run_id))
    if epochs:
        tags[T.WEIGHTS] = weights_label(epochs[0], epochs[1])
    tags.update({T.MODEL: model_name, T.DATASET_DIGEST: dataset_digest, **dict(extra_tags or {})})
    commit = commit if commit is not None else git_commit()
    if commit:
        tags[T.GIT_COMMIT] = commit
    tags[GATES_TAG] = measured[GATES_TAG]
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if not _is_missing(err):
            raise
        try:
            client.create_registered_model(
                name, tags={"genlib.model": model_name, "genlib.dataset": dataset},
                description=f"genlib {model_name} trained on {dataset}. Aliases: champion (best version that "
                            f"passed its gates), challenger (latest registration).")
        except MlflowException:  # registered meanwhile by a concurrent pipeline
            client.get_registered_model(name)

    mv = _find_version_for_run(client, name, run_id)
    created = mv is None
    if mv is None:
        # Tags go in with the version itself, so a failure cannot leave an untagged version behind.
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        mv = client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id,
                                         await_creation_for=60)
        if model_id:
            _link_logged_model(client, model_id, name, str(mv.version))
    version = str(mv.version)

    failed = first_failure(gate_results)
    with registry_lock(client, name):
        promoted, reason, previous = _move_aliases(client, name, model_name, version, metrics, failed)
        if not (previous == version and not promoted):  # an already-champion version keeps its description
            _describe(client, name, version, registration_description(name, version, promoted, reason,
                                                                      gate_results, previous))
        if promoted and previous:
            _describe(client, name, previous, dethroned_description(version, reason))
    aliases = tuple(sorted(a for a, v in (client.get_registered_model(name).aliases or {}).items() if str(v) == version))
    return Registration(name=name, version=version, aliases=aliases, promoted=promoted, reason=reason,
                        gates=tuple(gate_results), created=created)


def _source_tags(client: Any, run_id: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_run(run_id).data.tags)
    except MlflowException:
        return {}


def _move_aliases(client: Any, name: str, model_name: str, version: str, metrics: Mapping[str, float],
                  failed: GateResult | None) -> tuple[bool, str, str | None]:
    """Compare-and-set of ``challenger`` and ``champion``; the caller holds the registry lock of ``name``.

    Re-reads both aliases, moves ``challenger`` only forward (to the newest version), moves ``champion``
    when the version passed its gates and beats the champion read here, and checks that it took.
    Returns (promoted, reason, the champion's version before the call or None).
    """
    challenger = _current(client, name, CHALLENGER)
    if challenger is None or int(challenger.version) < int(version):
        client.set_registered_model_alias(name, CHALLENGER, version)
    champion = _current(client, name, CHAMPION)
    before = str(champion.version) if champion is not None else None
    if before == version:
        return False, f"version {version} is already champion", before
    if failed is not None:
        return False, f"gate {failed.gate} failed: {failed.detail}", before
    champion_metrics = metrics_from_tags(champion.tags) if champion is not None else None
    promoted, reason = beats(model_name, metrics, champion_metrics)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        _verify_alias(client, name, CHAMPION, version)
    elif before is not None:
        reason += f" (the champion is version {before})"
    return promoted, reason, before


def _verify_alias(client: Any, name: str, alias: str, version: str) -> None:
    now = _current(client, name, alias)
    if now is None or str(now.version) != version:
        raise RegistryError(f"{name}@{alias} should be version {version} after moving it, but is "
                            f"{now.version if now is not None else 'unset'}; another writer ignored the registry lock")


def _link_logged_model(client: Any, model_id: str, name: str, version: str) -> None:
    """Record the version on the logged model (``mlflow.modelVersions``), as ``mlflow.register_model`` does,
    so the MLflow UI links the model to its registered versions."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    existing = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    links = (json.loads(existing) if existing else []) + [{"name": name, "version": version}]
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(links)})


def _current(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if _is_missing(err):
            return None
        raise


@dataclasses.dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    alias: str
    previous: str | None
    gates: tuple[GateResult, ...]
    forced: bool

    @property
    def changed(self) -> bool:
        """False when the alias already pointed at the version (nothing moved)."""
        return self.previous != self.version


def promote(name: str, version: str | int, alias: str = CHAMPION, *, force: bool = False) -> Promotion:
    """Point ``alias`` of ``name`` at ``version`` (a number or an alias) after re-checking its gates.

    Raises RegistryError for a missing model, version or alias, and GateFailedError naming the
    first failed gate unless ``force``; in both cases no alias moves.
    """
    if not _ALIAS_RE.match(alias) or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias.lower()):
        raise RegistryError(f"invalid alias {alias!r}: use letters, digits, '_' or '-', not 'latest' or 'v<number>'")
    client = _client()
    mv = resolve_version(name, version, client)
    tags = dict(mv.tags or {})
    model_name = tags.get(T.MODEL)
    if not model_name:
        raise RegistryError(f"{name} version {mv.version} has no genlib.model tag; it was not registered by genlib")
    stored = metrics_from_tags(tags)
    results = check_gates(model_name, stored)
    failed = first_failure(results)
    if failed is not None and not force:
        raise GateFailedError(f"refusing to move @{alias} of {name} to version {mv.version}: gate {failed.gate} "
                              f"failed ({failed.detail})", gate=failed.gate)
    forced, target = force and failed is not None, str(mv.version)
    with registry_lock(client, name):  # the same compare-and-set as registration's
        current = _current(client, name, alias)
        previous = str(current.version) if current is not None else None
        if previous != target:
            client.set_registered_model_alias(name, alias, target)
            _verify_alias(client, name, alias, target)
        if forced:
            client.set_model_version_tag(name, target, T.FORCED, f"@{alias} despite gate {failed.gate}")  # type: ignore[union-attr]
            report = gates_tag(results, forced=True, metrics=gate_evidence(model_name, stored))
            client.set_model_version_tag(name, target, T.GATES_STATUS, gates_label(read_gates({GATES_TAG: report})))
            client.set_model_version_tag(name, target, GATES_TAG, report)
        if alias == CHAMPION and previous != target:
            _describe(client, name, target, promotion_description(alias, previous, results, forced))
            if previous:
                _describe(client, name, previous, dethroned_description(
                    target, "a manual promotion" + (" forced past a failed gate" if forced else "")))
    return Promotion(name, target, alias, previous, tuple(results), forced)


def list_registry(prefix: str = NAME_PREFIX) -> list[dict[str, Any]]:
    """Every ``genlib-*`` registered model with its versions (newest first), aliases and key metrics."""
    client = _client()
    out = []
    for rm in sorted(client.search_registered_models(f"name LIKE '{prefix}%'"), key=lambda m: m.name):
        by_version: dict[str, list[str]] = {}
        for alias, v in (rm.aliases or {}).items():
            by_version.setdefault(str(v), []).append(alias)
        versions = []
        for mv in sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: -int(v.version)):
            tags = dict(mv.tags or {})
            versions.append({
                "version": str(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "created": int(mv.creation_timestamp or 0),
                "dataset_digest": tags.get("genlib.dataset_digest"),
                "git_commit": tags.get("genlib.git_commit"),
                "gates": {k: v for k, v in (read_gates(tags) or {}).items() if k != "metrics"} or None,
                "description": mv.description or "",
                "metrics": metrics_from_tags(tags),
            })
        out.append({"name": rm.name, "model": (rm.tags or {}).get("genlib.model"),
                    "aliases": {a: str(v) for a, v in sorted((rm.aliases or {}).items())}, "versions": versions})
    return out
