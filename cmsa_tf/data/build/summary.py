"""The totals of a manifest: per split and overall counts, skipped items by reason."""

from cmsa_tf.data.build.shards import SKIP_REASONS


def summarize(manifest: dict) -> dict:
    """Fills the per-split and overall totals of a manifest from its shard entries."""
    by_reason = {}
    items = []
    for split, info in manifest["splits"].items():
        shards = info["shards"]
        manifest["splits"][split] = {
            "files": [s["file"] for s in shards],
            "examples": sum(s["count"] for s in shards),
            "candidates": sum(s["candidates"] for s in shards),
            "skipped": sum(len(i["sent_ids"]) for s in shards for i in s["skipped"]),
            "max_words": max([s["max_words"] for s in shards], default=0),
            "shards": shards,
        }
        for shard in shards:
            for item in shard["skipped"]:
                by_reason[item["reason"]] = by_reason.get(item["reason"], 0) + len(item["sent_ids"])
                items.append(item)
    manifest["counts"] = {split: info["examples"] for split, info in manifest["splits"].items()}
    manifest["max_words"] = max([i["max_words"] for i in manifest["splits"].values()], default=0)
    manifest["skipped"] = {
        "total": sum(by_reason.values()),
        "by_reason": {reason: by_reason[reason] for reason in SKIP_REASONS if reason in by_reason},
        "items": items,
    }
    return manifest
