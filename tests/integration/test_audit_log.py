"""The hash-chained audit log in the job store: tampering with the rows directly is detected.

Records go to SQLite (the default store) and PostgreSQL (shared by replicas); the tests then edit,
reorder and delete rows with plain SQL, as someone with database access would, and
``AuditLog.verify`` (and ``policy-sidecar audit verify``) must name every break.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from sidecar.audit import AuditEvent, AuditLog, chain_hash, open_audit_log

pytestmark = pytest.mark.integration


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        actor=f"token:user-{n}",
        action="PublishBundle",
        outcome="published",
        old_revision=f"r{n - 1}",
        new_revision=f"r{n}",
        digest="sha256:" + f"{n:02d}" * 32,
        changed_files=("data.json", f"data:replication.tenants.t{n}"),
        tenants=(f"t{n}",),
    )


async def _log_with(url: str, count: int) -> AuditLog:
    log = await open_audit_log(url)
    for n in range(1, count + 1):
        await log.append(_event(n))
    return log


def _sql(db: Path, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            conn.execute(statement)


async def test_an_untouched_log_verifies_and_lists_newest_first(tmp_path: Path) -> None:
    log = await _log_with(f"sqlite:///{tmp_path / 'jobs.db'}", 5)
    try:
        result = await log.verify()
        assert (result.ok, result.records, result.head_seq) == (True, 5, 5)
        records = await log.list(limit=3)
        assert [r.seq for r in records] == [5, 4, 3]
        assert records[0].prev_hash == records[1].hash  # each record names its predecessor
        assert [r.seq for r in await log.list(tenant="t2")] == [2]
        assert [r.seq for r in await log.list(before_seq=3)] == [2, 1]
    finally:
        await log.close()


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (["UPDATE audit_log SET actor = 'token:someone-else' WHERE seq = 3"],
         ["record 3: content does not match its hash (the record was edited)",
          ]),
        (["UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 1"],
         ["record 1: content does not match its hash (the record was edited)"]),
        (["DELETE FROM audit_log WHERE seq = 2"],
         ["record 3: expected record 2 here (records 2..2 deleted, or records reordered)",
          "record 3: prev_hash does not match the hash of the record before it"]),
        (["UPDATE audit_log SET seq = 100 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 4",
          "UPDATE audit_log SET seq = 4 WHERE seq = 100"],
         ["record 2: prev_hash does not match", "record 2: content does not match its hash",
          "record 3: prev_hash does not match", "record 4: content does not match its hash"]),
        (["DELETE FROM audit_log WHERE seq = 5"],
         ["head: the log recorded 5 records ending in hash"]),
        (["DELETE FROM audit_log WHERE seq >= 4", "UPDATE audit_head SET seq = 3"],
         ["head: the log recorded 3 records ending in hash"]),
        (["DELETE FROM audit_head"], ["head: the log recorded 0 records"]),
    ],
)  # fmt: skip
async def test_edited_reordered_and_deleted_records_are_detected(
    tmp_path: Path, tamper: list[str], expected: list[str]
) -> None:
    db = tmp_path / "jobs.db"
    log = await _log_with(f"sqlite:///{db}", 5)
    try:
        _sql(db, *tamper)
        result = await log.verify()
        assert not result.ok
        for start in expected:
            assert any(p.startswith(start) for p in result.problems), (start, result.problems)
    finally:
        await log.close()


async def test_a_rewritten_and_rehashed_log_is_caught_by_an_anchor_kept_elsewhere(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    log = await _log_with(f"sqlite:///{db}", 4)
    try:
        kept = {r.seq: r.hash for r in await log.list(limit=4)}  # as the log lines carried them
        # Someone with write access rewrites record 2 and recomputes every hash after it.
        prev = kept[1]
        for record in sorted(await log.list(limit=4), key=lambda r: r.seq)[1:]:
            event = record.event
            if record.seq == 2:
                event = dataclasses.replace(event, actor="token:someone-else")
            digest = chain_hash(record.seq, record.at, event, prev)
            with sqlite3.connect(db) as conn:
                conn.execute(
                    "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (event.actor, prev, digest, record.seq),
                )
            prev = digest
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE audit_head SET hash = ?", (prev,))
        assert (await log.verify()).ok  # self-consistent: the chain alone cannot tell
        rewritten = {r.seq: r.hash for r in await log.list(limit=4)}
        result = await log.verify({3: kept[3], 1: kept[1]})  # record 1 was left alone
        assert result.problems == (
            f"record 3: hash {rewritten[3][:12]}… is not the anchored {kept[3][:12]}… "
            "(the log was rewritten and its chain recomputed)",
        )
        deleted = await log.verify({9: kept[4]})
        assert deleted.problems == (
            f"record 9: anchored (hash {kept[4][:12]}…) but not in the log (deleted)",
        )
    finally:
        await log.close()


def test_cli_audit_verify_exits_1_naming_the_edited_record(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        yaml.safe_dump(
            {"policy": {"state_dir": str(tmp_path), "replication": {"store": f"sqlite:///{db}"}}}
        )
    )

    async def write() -> None:
        await (await _log_with(str(db), 3)).close()

    asyncio.run(write())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sidecar", "--config", str(config), "audit", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    intact = cli("verify")
    assert intact.returncode == 0, intact.stderr
    head = json.loads(cli("list", "--limit", "1").stdout)["records"][0]
    assert cli("verify", "--anchor", f"3:{head['hash']}").returncode == 0
    wrong = cli("verify", "--anchor", f"3:{'0' * 64}")
    assert wrong.returncode == 1
    assert "is not the anchored 000000000000…" in json.loads(wrong.stdout)["problems"][0]
    malformed = cli("verify", "--anchor", "three:abc")
    assert malformed.returncode == 2
    assert "expected SEQ:HASH" in malformed.stderr
    assert json.loads(intact.stdout) == {"ok": True, "records": 3, "head_seq": 3, "problems": []}
    listed = json.loads(cli("list", "--limit", "2").stdout)["records"]
    assert [(r["seq"], r["actor"], r["new_revision"]) for r in listed] == [
        (3, "token:user-3", "r3"),
        (2, "token:user-2", "r2"),
    ]
    _sql(db, "UPDATE audit_log SET new_revision = 'r-evil' WHERE seq = 2")
    broken = cli("verify")
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert report["ok"] is False
    assert report["problems"] == [
        "record 2: content does not match its hash (the record was edited)"
    ]


async def test_postgres_replicas_appending_at_once_build_one_chain(postgres_dsn: str) -> None:
    replicas = [await open_audit_log(postgres_dsn) for _ in range(3)]
    try:
        await asyncio.gather(*(replicas[n % 3].append(_event(n)) for n in range(1, 31)))
        result = await replicas[0].verify()
        assert (result.ok, result.records) == (True, 30), result.problems
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("UPDATE audit_log SET outcome = 'denied' WHERE seq = 7")
        result = await replicas[1].verify()
        assert result.problems == (
            "record 7: content does not match its hash (the record was edited)",
        )
    finally:
        for replica in replicas:
            await replica.close()
