"""Putting policies into a cluster: apply (with backup, diff and server dry run) and rollback."""

from __future__ import annotations

import argparse
from typing import Any

from segmenter.apply import CALICO_VIA, DEFAULT_BACKUP_DIR, run_apply, run_rollback
from segmenter.cli import options
from segmenter.cli.common import EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    result = run_apply(args.dir, context=args.context, kubeconfig=args.kubeconfig,
                       staged=args.staged, dry_run=args.dry_run, backup_dir=args.backup_dir,
                       calico_via=args.calico_via, echo=print)
    for note in result.notes:
        print(f"note: {note}")
    if args.dry_run:
        print(f"dry run: {args.dir} passed the server dry run; nothing applied")
    else:
        print(f"applied {args.dir}; undo with: segmenter rollback {result.backup}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    steps = run_rollback(args.backup, context=args.context, kubeconfig=args.kubeconfig,
                         dry_run=args.dry_run, echo=print)
    verb = "would restore" if args.dry_run else "restored"
    print(f"{verb} {args.backup} ({len(steps)} steps)")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "apply", help="apply a policy folder with a backup, diff and server dry run",
        description="Back up the policies in force (the kinds DIR holds, in the namespaces it "
                    "touches), run kubectl diff and a server dry run, then apply. Calico "
                    "objects go through kubectl when the cluster serves projectcalico.org/v3, "
                    "else calicoctl. Stops at the first failing step (exit 2).")
    p.add_argument("dir", metavar="DIR", help="policy folder (kustomization.yaml: kubectl -k)")
    options.cluster(p)
    p.add_argument("--staged", action="store_true",
                   help="apply only Calico staged policies (and their tiers / network sets)")
    p.add_argument("--dry-run", action="store_true",
                   help="diff and server dry run only: no backup, nothing applied")
    p.add_argument("--backup-dir", default=DEFAULT_BACKUP_DIR,
                   help="where timestamped backups go (default %(default)s)")
    p.add_argument("--calico-via", choices=list(CALICO_VIA),
                   help="how Calico objects are applied (default: detect)")
    p.set_defaults(func=cmd_apply)

    r = sub.add_parser(
        "rollback", help="undo an apply from its backup",
        description="Re-apply the objects saved by segmenter apply and delete the objects it "
                    "created.")
    r.add_argument("backup", metavar="BACKUP", help="a backup folder written by apply")
    r.add_argument("--context", help="kubeconfig context (default: the one apply used)")
    r.add_argument("--kubeconfig", help="kubeconfig file (default: the one apply used)")
    r.add_argument("--dry-run", action="store_true",
                   help="kubectl --dry-run=server; calicoctl steps are skipped")
    r.set_defaults(func=cmd_rollback)
