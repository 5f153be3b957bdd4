"""Plain-text and JSON renderings of the operations' reports, for the management commands.

The reports are dataclasses made by `services.py` and `selectors.py`; this only formats them.
"""

import dataclasses
import json

BAR_WIDTH = 40


def as_json(report):
    return json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False)


def compact_report_table(report):
    title = "Compaction (dry run: nothing was written)" if report.dry_run else "Compaction"
    rows = [
        ("scanned", report.scanned),
        ("oversized", report.oversized),
        ("idle", report.idle),
        ("legacy migrated", f"{report.migrated} ({human_bytes(report.migrated_bytes)})"),
        ("states split by field", report.docs_split),
        ("compacted", report.compacted),
        ("archived whole", report.archived_sessions),
        ("turns archived", report.turns_archived),
        ("bytes before", human_bytes(report.bytes_before)),
        ("bytes after", human_bytes(report.bytes_after)),
        ("stale index entries pruned", report.pruned),
        ("skipped", len(report.skipped)),
        ("bad index entries", len(report.bad_entries)),
        ("missing", len(report.missing)),
        ("failed", len(report.failed)),
        ("seconds", f"{report.seconds:.2f}"),
    ]
    if report.indexes is not None:
        rows.insert(
            0, ("indexes rebuilt", ", ".join(f"{k} {v}" for k, v in report.indexes.items()))
        )
    lines = [title, *_rows(rows)]
    for label, items, detail in (
        ("skipped", report.skipped, "reason"),
        ("failed", report.failed, "error"),
    ):
        lines += [f"{label}: {item['conversation_id']}: {item[detail]}" for item in items]
    lines += [f"missing: {cid}: no such conversation" for cid in report.missing]
    lines += [f"bad index entry: {item['entry']}: {item['reason']}" for item in report.bad_entries]
    if report.legacy_left == 0:
        lines.append("no legacy blob is left: STORE_LEGACY_READS=0 now saves their lookups")
    elif report.legacy_left:
        lines.append(f"legacy blobs left: {report.legacy_left}")
    return "\n".join(lines)


def session_stats_table(stats):
    lines = ["Sessions in Redis"]
    lines += _rows(
        [
            ("sessions", stats.count),
            ("total", human_bytes(stats.total_bytes)),
            ("p50", human_bytes(stats.p50)),
            ("p95", human_bytes(stats.p95)),
            ("max", human_bytes(stats.max)),
        ]
    )
    lines.append(f"  legacy blobs to migrate: {stats.legacy} ({human_bytes(stats.legacy_bytes)})")
    widest = max((count for _, _, count in stats.histogram), default=0)
    lines.append("\nSizes")
    for low, high, count in stats.histogram:
        bar = "#" * round(BAR_WIDTH * count / widest) if widest else ""
        lines.append(f"  {human_bytes(low):>9} - {human_bytes(high):<9} {bar:<{BAR_WIDTH}} {count}")
    lines.append(f"\nLargest {len(stats.largest)}")
    lines += _rows(stats.largest, human_bytes)
    lines.append("\nPer bot (sessions, bytes)")
    lines += _rows(
        [(bot, f"{count:>7}  {human_bytes(size)}") for bot, count, size in stats.per_bot]
    )
    if stats.corrupt:
        lines.append(f"\nCorrupt {len(stats.corrupt)} (left in place)")
        lines += [f"  {item['conversation_id']}: {item['reason']}" for item in stats.corrupt]
    return "\n".join(lines)


def human_bytes(size):
    unit = "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def _rows(rows, show=str):
    width = max((len(str(label)) for label, _ in rows), default=0)
    return [f"  {label:<{width}}  {show(value)}" for label, value in rows]
