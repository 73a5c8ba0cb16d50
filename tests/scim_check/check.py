"""Runs the scim2-tester conformance checks against a SCIM endpoint and prints one JSON
line per check (status, title, reason, tags, resource type). Used by tests/scim_conformance.rs.

Usage: check.py BASE_URL TOKEN
"""
import json
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = SyncSCIMClient(http)
    # For debugging one area by hand: SCIM_CHECK_TAGS=patch:add SCIM_CHECK_RAISE=1.
    tags = os.environ.get("SCIM_CHECK_TAGS")
    raise_exceptions = os.environ.get("SCIM_CHECK_RAISE") == "1"
    results = check_server(
        client,
        raise_exceptions=raise_exceptions,
        include_tags=set(tags.split(",")) if tags else None,
    )
    for result in results:
        print(json.dumps({
            "status": result.status.name,
            "title": result.title,
            "reason": result.reason,
            "tags": sorted(result.tags or []),
            "resource_type": result.resource_type,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
