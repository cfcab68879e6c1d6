"""Apply a folder of generated policies to a cluster with a backup, and roll it back.

``segmenter apply DIR`` runs, stopping at the first step that fails (one line naming the step,
exit status 2):

1. detect (only when DIR holds Calico objects): ``kubectl api-resources
   --api-group=projectcalico.org -o name``. When it lists every Calico kind DIR holds, Calico
   objects go through ``kubectl`` (Calico API server or native v3 CRDs); otherwise through
   ``calicoctl`` (policy-semantics.md §3.6).
2. backup: ``kubectl get <kind>.<group> -n NS -o yaml`` (``calicoctl get <kind> -n NS -o
   yaml``) for every kind DIR holds, in every namespace DIR touches. The answers are saved
   atomically under ``--backup-dir/<UTC timestamp>/`` with a ``manifest.json`` that also records
   which objects of DIR did not exist yet (the ones a rollback deletes).
3. diff: ``kubectl diff`` (exit status 1 means "differences", not failure). calicoctl has none.
4. dry run: ``kubectl apply --dry-run=server``; ``calicoctl validate -f`` (offline) for files
   that go through calicoctl.
5. apply: ``kubectl apply -k DIR`` when DIR has a kustomization, else ``kubectl apply -f DIR
   -R``; per file when only part of DIR goes through kubectl; ``calicoctl apply -f FILE``.

``--staged`` applies only Calico staged policies (StagedNetworkPolicy,
StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy) and the Tiers and network sets they
refer to, which enforce nothing: an audit period before enforcing. ``--dry-run`` runs the
detection, diff and server dry run only, and writes no backup.

``segmenter rollback BACKUP`` re-applies the saved objects that the apply overwrote (server
fields such as ``resourceVersion`` removed; objects DIR does not hold are saved for the record
but left alone) and deletes the objects the apply created.

Commands are built as argv lists by pure functions (:func:`plan_apply`, :func:`plan_rollback`)
and run through an injectable :data:`Runner`, so that tests check command construction and the
backup / rollback logic without a cluster: there is no Kubernetes API server on the
development machine, and the tests use a fake runner and a fake ``kubectl`` script on ``PATH``.
Nothing here has been run against a real cluster.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import yaml

from segmenter.analysis.diff.normalize import (
    SERVER_ANNOTATIONS,
    SERVER_METADATA,
    ObjectKey,
    normalize,
)
from segmenter.documents import At, load_json, parse_json, parse_yaml, read_text
from segmenter.errors import InputError, OutputError, SegmenterError
from segmenter.fileio import atomic_write_json, atomic_write_text, ensure_folder
from segmenter.k8s import PolicyKind
from segmenter.targets import CALICO_GROUP, all_kinds, kind_of

__all__ = [
    "BACKUP_FORMAT",
    "DEFAULT_BACKUP_DIR",
    "ApplyError",
    "ApplyResult",
    "Completed",
    "Runner",
    "SourceDir",
    "Step",
    "detect_calico_via",
    "plan_apply",
    "plan_rollback",
    "read_source",
    "run_apply",
    "run_rollback",
    "strip_server_fields",
    "subprocess_runner",
]

logger = logging.getLogger(__name__)

BACKUP_FORMAT: Final = "segmenter-apply-backup"
BACKUP_VERSION: Final = 1
DEFAULT_BACKUP_DIR: Final = "output/backups"
MANIFEST: Final = "manifest.json"
CALICO_VIA: Final = ("kubectl", "calicoctl")
_KUSTOMIZATIONS: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SUFFIXES: Final = (".yaml", ".yml", ".json")
# Kinds that --staged applies besides the staged policies: they enforce nothing themselves.
_STAGED_SUPPORT: Final = frozenset({"Tier", "NetworkSet", "GlobalNetworkSet"})
_RANK: Final = {(k.group, k.kind): i for i, k in enumerate(all_kinds())}


class ApplyError(SegmenterError):
    """A step of apply or rollback failed (or could not run)."""


# ---------------------------------------------------------------------------------------------
# Steps and runners


@dataclass(frozen=True)
class Step:
    """One command: ``phase`` (detect, backup, diff, dry-run, apply, restore, delete), a short
    ``name`` for messages, the ``argv``, the exit codes that mean success, extra environment.

    Backup steps also carry the ``kind`` and ``namespace`` they read.
    """

    phase: str
    name: str
    argv: tuple[str, ...]
    ok_codes: frozenset[int] = frozenset({0})
    env: tuple[tuple[str, str], ...] = ()
    kind: PolicyKind | None = None
    namespace: str | None = None

    @property
    def tool(self) -> str:
        return self.argv[0]

    def command_line(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return (env + " " if env else "") + shlex.join(self.argv)


@dataclass(frozen=True)
class Completed:
    """What a runner reports: exit status and captured output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


Runner = Callable[[Step], Completed]


def subprocess_runner(step: Step, *, timeout: float = 600.0) -> Completed:
    """Run ``step`` with :func:`subprocess.run` (no shell), capturing its output."""
    env = {**os.environ, **dict(step.env)} if step.env else None
    try:
        proc = subprocess.run(list(step.argv), capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise ApplyError(f"step {step.name!r}: {step.tool} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise ApplyError(f"step {step.name!r}: {step.tool} timed out after "
                         f"{timeout:.0f} s") from None
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def _kubectl(context: str | None, kubeconfig: str | None, *args: str) -> tuple[str, ...]:
    argv = ["kubectl"]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if context:
        argv += ["--context", context]
    return (*argv, *args)


def _calicoctl(context: str | None, *args: str) -> tuple[str, ...]:
    # --context is a global option of calicoctl and must come before the command.
    return ("calicoctl", *(("--context", context) if context else ()), *args)


def _calico_env(kubeconfig: str | None) -> tuple[tuple[str, str], ...]:
    return (("DATASTORE_TYPE", "kubernetes"), ("KUBECONFIG", kubeconfig)) if kubeconfig else ()


def _calicoctl_type(kind: PolicyKind) -> str:
    return kind.kind[0].lower() + kind.kind[1:]


# ---------------------------------------------------------------------------------------------
# Reading DIR


@dataclass(frozen=True)
class SourceObject:
    key: ObjectKey
    kind: PolicyKind | None  # None: not a policy kind
    file: str  # relative to the folder
    manifest: dict[str, Any] = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class SourceDir:
    """The policy folder to apply: its files (relative, sorted) and the objects in them."""

    root: Path
    kustomization: Path | None
    files: tuple[str, ...]
    objects: tuple[SourceObject, ...]
    notes: tuple[str, ...] = ()

    def select(self, *, staged: bool) -> tuple[SourceObject, ...]:
        """The objects apply handles: all, or with ``staged`` the staged kinds and supports."""
        if not staged:
            return self.objects
        return tuple(o for o in self.objects if o.kind is not None
                     and (o.kind.staged or (o.kind.group == CALICO_GROUP
                                            and o.kind.kind in _STAGED_SUPPORT)))


def _documents(path: Path) -> list[Any]:
    text = read_text(path)
    if path.suffix.lower() == ".json":
        data = parse_json(text, path=str(path))
        return data if isinstance(data, list) else [data]
    return parse_yaml(text, path=str(path))


def _expand(docs: Iterable[Any]) -> list[dict[str, Any]]:
    """Objects of parsed documents: ``List`` / ``*List`` items and YAML sequences expanded."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, list):
            out.extend(_expand(doc))
            continue
        if not isinstance(doc, Mapping):
            continue
        kind = str(doc.get("kind") or "")
        items = doc.get("items")
        if kind.endswith("List") and isinstance(items, list):
            item_kind = kind[: -len("List")] if kind != "List" else None
            for raw in items:
                if isinstance(raw, Mapping):
                    item = dict(raw)
                    if item_kind:
                        item.setdefault("kind", item_kind)
                        if doc.get("apiVersion"):
                            item.setdefault("apiVersion", doc["apiVersion"])
                    out.extend(_expand([item]))
            continue
        out.append(dict(doc))
    return out


def read_source(folder: str | os.PathLike[str]) -> SourceDir:
    """Read DIR (a folder of YAML/JSON manifests, or one file).

    A ``namespace:`` in the folder's kustomization is applied to namespaced objects, as
    ``kubectl apply -k`` would; other kustomize transformations are not modelled (a note says
    so). Objects without a namespace are taken to go to ``default``.

    Raises:
        InputError: a missing folder, unreadable or malformed files, no objects at all.
    """
    root = Path(folder)
    if not root.exists():
        raise InputError("no such file or directory", path=str(root))
    notes: list[str] = []
    kustomization: Path | None = None
    if root.is_dir():
        for name in _KUSTOMIZATIONS:
            if (root / name).is_file():
                kustomization = root / name
                break
        paths = sorted((p for p in root.rglob("*") if p.is_file()
                        and p.suffix.lower() in _SUFFIXES and p.name not in _KUSTOMIZATIONS
                        and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                       key=lambda p: p.relative_to(root).as_posix())
        base = root
    else:
        paths, base = [root], root.parent
    namespace_override: str | None = None
    if kustomization is not None:
        data = _documents(kustomization)
        spec = data[0] if data and isinstance(data[0], Mapping) else {}
        if isinstance(spec.get("namespace"), str):
            namespace_override = spec["namespace"]
        others = sorted(k for k in spec if k not in (
            "apiVersion", "kind", "resources", "namespace", "metadata"))
        if others:
            notes.append(f"{kustomization.name} uses {', '.join(others)}: not modelled in the "
                         "backup scope (kubectl -k applies them)")
    objects: list[SourceObject] = []
    files: list[str] = []
    for path in paths:
        rel = path.relative_to(base).as_posix()
        docs = _expand(_documents(path))
        if docs:
            files.append(rel)
        for raw in docs:
            info = kind_of(raw)
            doc = raw
            if namespace_override and info is not None and info.namespaced:
                doc = {**raw, "metadata": {**(raw.get("metadata") or {}),
                                           "namespace": namespace_override}}
            objects.append(SourceObject(ObjectKey.of(normalize(doc)), info, rel, doc))
    if not objects:
        raise InputError("no manifests found", path=str(root))
    other = sorted({o.key.kind for o in objects if o.kind is None})
    if other:
        notes.append(f"objects of other kinds ({', '.join(other)}) are applied but neither "
                     "backed up nor rolled back")
    return SourceDir(root, kustomization, tuple(files), tuple(objects), tuple(notes))


# ---------------------------------------------------------------------------------------------
# Planning


def detect_step(*, context: str | None = None, kubeconfig: str | None = None) -> Step:
    return Step("detect", "detect the Calico API (kubectl api-resources)",
                _kubectl(context, kubeconfig, "api-resources",
                         f"--api-group={CALICO_GROUP}", "-o", "name"))


def detect_calico_via(kinds: Iterable[PolicyKind], runner: Runner, *,
                      context: str | None = None, kubeconfig: str | None = None) -> str:
    """``"kubectl"`` when the cluster serves every Calico kind of ``kinds``, else
    ``"calicoctl"``. Raises :class:`ApplyError` when ``kubectl api-resources`` fails."""
    needed = {k.resource for k in kinds if k.group == CALICO_GROUP}
    if not needed:
        return "kubectl"
    step = detect_step(context=context, kubeconfig=kubeconfig)
    result = _run(step, runner)
    served = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    missing = sorted(needed - served)
    if missing:
        logger.info("the cluster does not serve %s through kubectl: using calicoctl",
                    ", ".join(missing))
        return "calicoctl"
    return "kubectl"


def _via(kind: PolicyKind | None, calico_via: str) -> str:
    if kind is not None and kind.group == CALICO_GROUP:
        return calico_via
    return "kubectl"


def plan_apply(
    folder: str | os.PathLike[str] | SourceDir,
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    staged: bool = False,
    calico_via: str = "kubectl",
) -> list[Step]:
    """Every step of an apply of ``folder``, in order (backup, diff, dry-run, apply).

    Pure apart from reading the folder. ``calico_via`` says how Calico objects go in
    (``"kubectl"`` or ``"calicoctl"``; see :func:`detect_calico_via`).

    Raises:
        InputError: unreadable folder; ``staged`` without staged policies; a file that mixes
            objects that must take different routes (staged and enforcing, or Calico and
            Kubernetes with ``calico_via="calicoctl"``).
    """
    if calico_via not in CALICO_VIA:
        raise ValueError(f"calico_via must be one of {CALICO_VIA}")
    src = folder if isinstance(folder, SourceDir) else read_source(folder)
    selected = src.select(staged=staged)
    if staged and not any(o.kind is not None and o.kind.staged for o in selected):
        raise InputError("no staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy) "
                         "found: compile with --staged", path=str(src.root))
    chosen_files = {o.file for o in selected}
    for rel in sorted(chosen_files):
        in_file = [o for o in src.objects if o.file == rel]
        routes = {_via(o.kind, calico_via) for o in in_file}
        if staged and len(in_file) != len([o for o in selected if o.file == rel]):
            raise InputError("mixes staged policies with enforcing objects; --staged applies "
                             "whole files", path=str(src.root / rel))
        if len(routes) > 1:
            raise InputError("mixes Calico and Kubernetes objects, which go through "
                             "calicoctl and kubectl respectively: split the file",
                             path=str(src.root / rel))
    steps = _backup_steps(selected, context=context, kubeconfig=kubeconfig,
                          calico_via=calico_via)
    kubectl_files = sorted({o.file for o in selected if _via(o.kind, calico_via) == "kubectl"})
    calicoctl_files = sorted({o.file for o in selected
                              if _via(o.kind, calico_via) == "calicoctl"})
    whole = (not staged and not calicoctl_files and src.root.is_dir())
    if whole:
        targets: tuple[str, ...] = (("-k", str(src.root)) if src.kustomization is not None
                                    else ("-f", str(src.root), "-R"))
    else:
        targets = tuple(a for rel in kubectl_files
                        for a in ("-f", str(src.root / rel) if src.root.is_dir()
                                  else str(src.root)))
        if src.kustomization is not None and kubectl_files:
            logger.info("applying the files of %s one by one: its kustomization is not used",
                        src.root)
    if targets:
        steps.append(Step("diff", "diff (kubectl diff)",
                          _kubectl(context, kubeconfig, "diff", *targets),
                          ok_codes=frozenset({0, 1})))
        steps.append(Step("dry-run", "server dry run (kubectl apply --dry-run=server)",
                          _kubectl(context, kubeconfig, "apply", "--dry-run=server", *targets)))
    env = _calico_env(kubeconfig)
    for rel in calicoctl_files:
        path = str(src.root / rel) if src.root.is_dir() else str(src.root)
        steps.append(Step("dry-run", f"offline validation of {rel} (calicoctl validate)",
                          _calicoctl(None, "validate", "-f", path), env=env))
    for rel in calicoctl_files:
        path = str(src.root / rel) if src.root.is_dir() else str(src.root)
        steps.append(Step("apply", f"apply {rel} (calicoctl apply)",
                          _calicoctl(context, "apply", "-f", path), env=env))
    if targets:
        steps.append(Step("apply", "apply (kubectl apply)",
                          _kubectl(context, kubeconfig, "apply", *targets)))
    return steps


def _backup_steps(selected: Sequence[SourceObject], *, context: str | None,
                  kubeconfig: str | None, calico_via: str) -> list[Step]:
    kinds = sorted({o.kind for o in selected if o.kind is not None},
                   key=lambda k: _RANK[(k.group, k.kind)])
    namespaces = sorted({o.key.namespace for o in selected
                         if o.kind is not None and o.kind.namespaced})
    steps: list[Step] = []
    for kind in kinds:
        for ns in (namespaces if kind.namespaced else [None]):
            ns_args = ("-n", ns) if ns else ()
            where = f" in {ns}" if ns else ""
            if _via(kind, calico_via) == "calicoctl":
                argv = _calicoctl(context, "get", _calicoctl_type(kind), *ns_args, "-o", "yaml")
                steps.append(Step("backup", f"backup of {kind.resource}{where} (calicoctl get)",
                                  argv, env=_calico_env(kubeconfig), kind=kind, namespace=ns))
            else:
                argv = _kubectl(context, kubeconfig, "get", kind.resource, *ns_args,
                                "-o", "yaml")
                steps.append(Step("backup", f"backup of {kind.resource}{where} (kubectl get)",
                                  argv, kind=kind, namespace=ns))
    return steps


# ---------------------------------------------------------------------------------------------
# Running


def _run(step: Step, runner: Runner) -> Completed:
    logger.info("running %s", step.command_line())
    result = runner(step)
    if result.returncode not in step.ok_codes:
        raise ApplyError(f"step {step.name!r} failed: {step.tool} exited {result.returncode}: "
                         f"{_failure_line(result)}")
    return result


_KLOG: Final = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")


def _failure_line(result: Completed) -> str:
    """The most telling line of a failed command: its first ``error`` line, else its first
    line that is not client-go log noise (``E1126 18:02:43.43 27656 memcache.go:265] ...``)."""
    lines = [ln.strip() for ln in (result.stderr.strip() or result.stdout.strip()).splitlines()
             if ln.strip()]
    if not lines:
        return "no output"
    plain = [ln for ln in lines if not _KLOG.match(ln)]
    errors = [ln for ln in plain if ln.lower().startswith("error")]
    return (errors or plain or lines)[0]


def strip_server_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit to re-apply: without ``status`` and the metadata the server sets."""
    out = {k: v for k, v in doc.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k not in SERVER_ANNOTATIONS}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def _dump(docs: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False,
                              default_flow_style=False, width=100)


def _new_backup_folder(base: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    ensure_folder(base)
    for n in range(1, 1000):
        folder = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create a backup folder: {exc.strerror or exc}",
                              path=str(folder)) from None
        return folder
    raise ApplyError(f"cannot create a backup folder under {base}")


@dataclass
class ApplyResult:
    """What :func:`run_apply` did."""

    steps: list[Step]
    ran: list[Step] = field(default_factory=list)
    backup: Path | None = None
    created: list[ObjectKey] = field(default_factory=list)
    existing: list[ObjectKey] = field(default_factory=list)
    diff: str = ""
    calico_via: str = "kubectl"
    notes: list[str] = field(default_factory=list)


def run_apply(
    folder: str | os.PathLike[str],
    *,
    runner: Runner = subprocess_runner,
    context: str | None = None,
    kubeconfig: str | None = None,
    staged: bool = False,
    dry_run: bool = False,
    backup_dir: str | os.PathLike[str] = DEFAULT_BACKUP_DIR,
    calico_via: str | None = None,
    now: datetime | None = None,
    echo: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Detect, back up, diff, dry-run and apply ``folder``; stop at the first failing step.

    ``calico_via=None`` detects it. ``echo`` receives progress lines and the output of
    ``kubectl diff`` / ``apply``. With ``dry_run`` no backup is written and nothing is applied.

    Raises:
        InputError: see :func:`plan_apply`.
        ApplyError: a step failed; the message names it (and the backup, once there is one).
    """
    say = echo or (lambda _line: None)
    src = read_source(folder)
    selected = src.select(staged=staged)
    if calico_via is None:
        calico_via = detect_calico_via({o.kind for o in selected if o.kind is not None},
                                       runner, context=context, kubeconfig=kubeconfig)
    steps = plan_apply(src, context=context, kubeconfig=kubeconfig, staged=staged,
                       calico_via=calico_via)
    result = ApplyResult(steps=steps, calico_via=calico_via, notes=list(src.notes))
    manifest: dict[str, Any] | None = None
    backup_steps = [s for s in steps if s.phase == "backup"]
    if not dry_run:
        saved: list[tuple[Step, Completed]] = []
        for step in backup_steps:
            say(f"$ {step.command_line()}")
            saved.append((step, _run(step, runner)))
            result.ran.append(step)
        folder_path = _new_backup_folder(Path(backup_dir), now or datetime.now(UTC))
        manifest = _write_backup(folder_path, src, selected, saved, context=context,
                                 kubeconfig=kubeconfig, staged=staged, calico_via=calico_via,
                                 now=now or datetime.now(UTC), result=result)
        result.backup = folder_path
        say(f"backup: {folder_path} ({len(result.existing)} objects saved, "
            f"{len(result.created)} to be created)")
    for step in steps:
        if step.phase == "backup" or (dry_run and step.phase == "apply"):
            continue
        say(f"$ {step.command_line()}")
        try:
            completed = _run(step, runner)
        except ApplyError as exc:
            if manifest is not None and result.backup is not None:
                manifest.update(status="failed", failed_step=step.name)
                atomic_write_json(result.backup / MANIFEST, manifest)
                hint = (f"; roll back with: segmenter rollback {result.backup}"
                        if step.phase == "apply" else f"; backup in {result.backup}")
                raise ApplyError(exc.message + hint) from None
            raise
        result.ran.append(step)
        if step.phase == "diff":
            result.diff += completed.stdout
        if step.phase in ("diff", "apply") and completed.stdout.strip():
            say(completed.stdout.rstrip("\n"))
    if manifest is not None and result.backup is not None:
        manifest["status"] = "applied"
        atomic_write_json(result.backup / MANIFEST, manifest)
    return result


def _write_backup(folder: Path, src: SourceDir, selected: Sequence[SourceObject],
                  saved: Sequence[tuple[Step, Completed]], *, context: str | None,
                  kubeconfig: str | None, staged: bool, calico_via: str, now: datetime,
                  result: ApplyResult) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    existing: set[ObjectKey] = set()
    touched = {o.key for o in selected if o.kind is not None}
    for number, (step, completed) in enumerate(saved, start=1):
        assert step.kind is not None
        stem = f"{number:02d}-{step.kind.resource}" + (f"-{step.namespace}"
                                                        if step.namespace else "")
        atomic_write_text(folder / "saved" / f"{stem}.yaml", completed.stdout)
        try:
            objects = _expand(parse_yaml(completed.stdout, path=None))
        except InputError as exc:
            raise ApplyError(f"step {step.name!r}: the output is not YAML: "
                             f"{exc.one_line()}") from None
        by_key = {ObjectKey.of(normalize(o)): o for o in objects if kind_of(o) == step.kind}
        keys = sorted(by_key)
        existing.update(keys)
        overwritten = [k for k in keys if k in touched]
        restore = None
        if overwritten:
            restore = f"restore/{stem}.yaml"
            atomic_write_text(folder / restore, _dump([strip_server_fields(by_key[k])
                                                        for k in overwritten]))
        entries.append({
            "file": f"saved/{stem}.yaml",
            "restore": restore,
            "resource": step.kind.resource,
            "apiVersion": step.kind.api_version,
            "kind": step.kind.kind,
            "namespace": step.namespace,
            "tool": step.tool,
            "objects": [str(k) for k in keys],
            "overwritten": [str(k) for k in overwritten],
        })
    created: list[dict[str, Any]] = []
    seen: set[ObjectKey] = set()
    for obj in sorted(selected, key=lambda o: o.key):
        if obj.kind is None or obj.key in existing or obj.key in seen:
            continue
        seen.add(obj.key)
        created.append({
            **obj.key.as_dict(),
            "id": str(obj.key),
            "apiVersion": obj.kind.api_version,
            "resource": obj.kind.resource,
            "tool": _via(obj.kind, calico_via),
            "namespaced": obj.kind.namespaced,
        })
    result.existing = sorted(existing)
    result.created = sorted(seen)
    manifest: dict[str, Any] = {
        "format": BACKUP_FORMAT,
        "version": BACKUP_VERSION,
        "created": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": str(src.root.resolve()),
        "context": context,
        # absolute, so that a rollback from another directory reaches the same cluster
        "kubeconfig": os.path.abspath(os.path.expanduser(kubeconfig)) if kubeconfig else None,
        "staged": staged,
        "calico_via": calico_via,
        "saved": entries,
        "created_by_apply": created,
        "status": "backed-up",
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# Rollback


def read_backup_manifest(backup: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``manifest.json`` of a backup folder, every field rollback reads checked."""
    path = Path(backup) / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise InputError(f"not a segmenter backup (no {MANIFEST})", path=str(backup))
    doc = At(load_json(path), str(path))
    if doc.mapping().get("format") != BACKUP_FORMAT:
        doc.fail(f"not a {BACKUP_FORMAT} manifest")
    if doc.value.get("version") != BACKUP_VERSION:
        doc.key("version").fail(f"backup version {doc.value.get('version')!r} is not supported")
    doc.key("context").text_or_none()
    doc.key("kubeconfig").text_or_none()
    tools = {"kubectl": "kubectl", "calicoctl": "calicoctl"}
    for entry in doc.key("saved").items():
        restore = entry.key("restore").text_or_none()
        if restore is not None and (Path(restore).is_absolute() or ".." in Path(restore).parts):
            entry.key("restore").fail("must be a path inside the backup folder")
        entry.need("resource").text()
        entry.key("namespace").text_or_none()
        entry.need("tool").choice(tools)
    for item in doc.key("created_by_apply").items():
        for key in ("group", "kind", "resource", "name"):
            if key != "group" and not item.need(key).text():
                item.key(key).fail("must not be empty")
        item.key("group").text_or_none()
        item.key("namespace").text_or_none()
        item.need("tool").choice(tools)
    return doc.mapping()


def plan_rollback(
    backup: str | os.PathLike[str],
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    dry_run: bool = False,
) -> list[Step]:
    """The steps that undo an apply: re-apply the objects it overwrote, then delete the ones
    it created (policies before network sets before tiers). ``context`` / ``kubeconfig``
    default to the ones the apply used. With ``dry_run``, kubectl steps get
    ``--dry-run=server`` and calicoctl steps, which have no dry run, are left out."""
    data = read_backup_manifest(backup)
    root = Path(backup)
    context = context if context is not None else data.get("context")
    kubeconfig = kubeconfig if kubeconfig is not None else data.get("kubeconfig")
    dry = ("--dry-run=server",) if dry_run else ()
    env = _calico_env(kubeconfig)
    steps: list[Step] = []
    for entry in data.get("saved") or []:
        restore = entry.get("restore")
        if not restore:
            continue
        path = root / str(restore)
        if not path.is_file():
            raise InputError("saved objects missing from the backup", path=str(path))
        label = f"restore {entry.get('resource')}" + (
            f" in {entry['namespace']}" if entry.get("namespace") else "")
        if entry.get("tool") == "calicoctl":
            if not dry_run:
                steps.append(Step("restore", f"{label} (calicoctl apply)",
                                  _calicoctl(context, "apply", "-f", str(path)), env=env))
        else:
            steps.append(Step("restore", f"{label} (kubectl apply)",
                              _kubectl(context, kubeconfig, "apply", *dry, "-f", str(path))))
    groups: dict[tuple[int, str, str, str, str], list[str]] = {}
    for item in data.get("created_by_apply") or []:
        rank = _RANK.get((str(item.get("group")), str(item.get("kind"))), len(_RANK))
        key = (rank, str(item.get("tool")), str(item.get("resource")), str(item.get("kind")),
               str(item.get("namespace") or ""))
        groups.setdefault(key, []).append(str(item.get("name")))
    # Policies first, then network sets, then tiers: a tier with policies cannot be deleted.
    for (_, tool, resource, kind, ns), names in sorted(
            groups.items(), key=lambda kv: (-kv[0][0], kv[0][1:])):
        ns_args = ("-n", ns) if ns else ()
        where = f" in {ns}" if ns else ""
        if tool == "calicoctl":
            if dry_run:
                continue
            argv = _calicoctl(context, "delete", kind[0].lower() + kind[1:], *sorted(names),
                              *ns_args, "--skip-not-exists")
            steps.append(Step("delete", f"delete created {resource}{where} (calicoctl delete)",
                              argv, env=env))
        else:
            argv = _kubectl(context, kubeconfig, "delete", resource, *sorted(names), *ns_args,
                            "--ignore-not-found", *dry)
            steps.append(Step("delete", f"delete created {resource}{where} (kubectl delete)",
                              argv))
    return steps


def run_rollback(
    backup: str | os.PathLike[str],
    *,
    runner: Runner = subprocess_runner,
    context: str | None = None,
    kubeconfig: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[Step]:
    """Run :func:`plan_rollback`'s steps, stopping at the first failure; returns them."""
    say = echo or (lambda _line: None)
    steps = plan_rollback(backup, context=context, kubeconfig=kubeconfig, dry_run=dry_run)
    for step in steps:
        say(f"$ {step.command_line()}")
        completed = _run(step, runner)
        if completed.stdout.strip():
            say(completed.stdout.rstrip("\n"))
    return steps


# ---------------------------------------------------------------------------------------------
# Commands
